/** A lying server against the SDK, key-transparency plugin on (the cases: support/lying-server.ts). */
import { lyingServerCases } from "./support/lying-server.js";

lyingServerCases(true);
