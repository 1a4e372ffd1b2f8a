// Swagger UI for the recsys API. Assets come from the API itself (no CDN); the spec is
// the API's own /openapi.json, which has no servers entry, so "Try it out" calls the API
// that served this page. validatorUrl: null keeps the page from calling validator.swagger.io.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    tryItOutEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
