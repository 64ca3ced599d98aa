// Package openapi serves the merged OpenAPI (Swagger 2.0) document that buf
// generates from the protos into gen/ (committed, drift-checked).
package openapi

import (
	_ "embed"
	"net/http"
)

//go:embed gen/api.swagger.json
var document []byte

// Document returns the generated OpenAPI document.
func Document() []byte { return document }

// Handler serves the document as JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(document)
	})
}
