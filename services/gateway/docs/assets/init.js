// Starts Swagger UI on /docs over the gateway's OpenAPI document. It is a
// file, not an inline script, so the page's Content-Security-Policy needs no
// script exception. The bundle (swagger-ui-bundle.js) loads first.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  // The token lives in this tab's memory only: never in localStorage.
  persistAuthorization: false,
  // Never read configuration (another url, a configUrl) from the query string.
  queryConfigEnabled: false,
  // No third-party validator badge: the page talks to its own origin only.
  validatorUrl: null,
  displayRequestDuration: true,
  showExtensions: true,
});
