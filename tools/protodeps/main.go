// Command protodeps writes the third-party .proto files that Rapport's protos
// import (google/api, google/rpc, buf/validate, protoc-gen-openapiv2) into a
// directory, normally third_party/proto.
//
// It exists because the build has no access to the Buf Schema Registry, so
// buf.yaml cannot declare deps. Instead the files are rebuilt from the
// descriptors compiled into the Go modules pinned in tools/go.mod (go.sum fixes
// their content) and printed back to .proto source. The output carries no
// comments but is faithful: each descriptor equals the Go module's. Run
// `buf format -w` on the output afterwards; the printer's layout is not buf's.
//
// Usage:
//
//	go tool protodeps -out third_party/proto
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2/options"
	"github.com/jhump/protoreflect/v2/protoprint"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// roots are the files Rapport's protos import directly. Their imports are
// added transitively, except the well-known types (buf ships those).
var roots = []protoreflect.FileDescriptor{
	annotations.File_google_api_annotations_proto,
	annotations.File_google_api_http_proto,
	annotations.File_google_api_field_behavior_proto,
	annotations.File_google_api_resource_proto,
	httpbody.File_google_api_httpbody_proto,
	status.File_google_rpc_status_proto,
	validatepb.File_buf_validate_validate_proto,
	options.File_protoc_gen_openapiv2_options_annotations_proto,
	options.File_protoc_gen_openapiv2_options_openapiv2_proto,
}

func main() {
	out := flag.String("out", "third_party/proto", "output directory (deleted first)")
	flag.Parse()
	if flag.NArg() != 0 || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "protodeps:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	if clean := filepath.Clean(out); clean == "." || clean == "/" {
		return fmt.Errorf("refusing to delete %q", out)
	}
	files := closure(roots)
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	p := protoprint.Printer{Indent: "  "}
	if err := p.PrintProtosToFileSystem(files, out); err != nil {
		return err
	}
	for _, fd := range files {
		fmt.Println(filepath.Join(out, fd.Path()))
	}
	return nil
}

// closure returns roots plus their transitive imports, without the
// google/protobuf well-known types, sorted by path.
func closure(roots []protoreflect.FileDescriptor) []protoreflect.FileDescriptor {
	seen := map[string]protoreflect.FileDescriptor{}
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if strings.HasPrefix(fd.Path(), "google/protobuf/") {
			return
		}
		if _, ok := seen[fd.Path()]; ok {
			return
		}
		seen[fd.Path()] = fd
		imports := fd.Imports()
		for i := range imports.Len() {
			visit(imports.Get(i).FileDescriptor)
		}
	}
	for _, fd := range roots {
		visit(fd)
	}
	files := make([]protoreflect.FileDescriptor, 0, len(seen))
	for _, fd := range seen {
		files = append(files, fd)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path() < files[j].Path() })
	return files
}
