/** The browser entry point: renders the app into `#app` of index.html. */
import { render } from "preact";
import { App } from "./app";

const root = document.getElementById("app");
if (root) render(<App />, root);
