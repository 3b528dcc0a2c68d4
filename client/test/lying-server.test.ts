/** A lying server against the SDK, key-transparency plugin off (the cases: support/lying-server.ts). */
import { lyingServerCases } from "./support/lying-server.js";

lyingServerCases(false);
