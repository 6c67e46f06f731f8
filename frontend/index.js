// TensorBoard imports this module inside the plugin's iframe and calls
// render(). The rest of the frontend is served by the plugin's /static route.

import {App} from "./static/app.js";

export async function render() {
  await loadStylesheet(new URL("./static/style.css", import.meta.url));
  await new App(document.body).start();
}

/** Adds a <link rel=stylesheet> (no inline styles: TensorBoard's CSP) and waits for it. */
function loadStylesheet(href) {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  const loaded = new Promise((resolve) => {
    link.onload = link.onerror = resolve;  // unstyled beats blank if the CSS fails
  });
  document.head.append(link);
  return loaded;
}
