package docs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/openapi"
)

// The browser test loads /docs in a real headless Chromium against the real
// /openapi.json, and checks that Swagger UI renders every service (tag) and
// every operation in the document: the page's assets load, its
// Content-Security-Policy lets Swagger UI run, and the document parses.
//
// Without a browser it is skipped, or fails when CI is set or
// RAPPORT_REQUIRE_BROWSER=1. RAPPORT_DOCS_SCREENSHOT=<file.png> keeps a copy of
// the screenshot it takes.

// browsers are looked up in PATH in this order.
var browsers = []string{"chromium", "chromium-browser", "google-chrome"}

const installHint = "install Debian's Chromium: `apt-get install -y chromium` as root (or `make browser`); " +
	"elsewhere put chromium, chromium-browser or google-chrome in PATH"

func browserRequired() bool {
	if os.Getenv("RAPPORT_REQUIRE_BROWSER") == "1" {
		return true
	}
	ci := strings.TrimSpace(os.Getenv("CI"))
	return ci != "" && ci != "0" && !strings.EqualFold(ci, "false")
}

// findBrowser returns a browser's path, or skips (fails, if one is required).
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range browsers {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no headless browser in PATH (looked for " + strings.Join(browsers, ", ") + "): " + installHint
	if browserRequired() {
		t.Fatal(msg + ". It is required here: CI or RAPPORT_REQUIRE_BROWSER=1 is set.")
	}
	t.Skip(msg + ". Set RAPPORT_REQUIRE_BROWSER=1 to make this a failure.")
	return ""
}

// runBrowser runs one headless browser on its own fresh profile and returns
// its stdout and the page's console messages (logged on stderr).
func runBrowser(t *testing.T, browser string, args ...string) (stdout string, console []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append([]string{
		"--headless",
		"--no-sandbox", // running as root (containers, CI) needs it
		"--disable-gpu",
		"--disable-quic",
		"--disable-dev-shm-usage", // small /dev/shm in containers
		"--no-first-run",
		"--no-proxy-server",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=10000", // time for the bundle, the document and the render
		"--enable-logging=stderr",
		"--log-level=0", // console messages included
	}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second // leftover children holding the pipes
	err := cmd.Run()
	require.NoError(t, err, "%s\nstderr:\n%s", cmd, errOut.String())

	sc := bufio.NewScanner(&errOut)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), ":CONSOLE") {
			console = append(console, sc.Text())
		}
	}
	return out.String(), console
}

// requireCleanConsole fails on console messages that mean the page is broken:
// a CSP violation, an uncaught error, a resource that failed to load.
func requireCleanConsole(t *testing.T, console []string) {
	t.Helper()
	for _, line := range console {
		for _, bad := range []string{"Content Security Policy", "Uncaught", "Failed to load resource"} {
			require.NotContains(t, line, bad, "browser console:\n%s", strings.Join(console, "\n"))
		}
	}
}

type operation struct{ tag, id string }

// documentOperations returns the document's operations with their tags (the
// gRPC services), and the sorted set of those tags.
func documentOperations(t *testing.T) (ops []operation, tags []string) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openapi.Document(), &doc))
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch"}
	for _, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains(methods, method) {
				continue // e.g. path-level "parameters"
			}
			var op struct {
				OperationID string   `json:"operationId"`
				Tags        []string `json:"tags"`
			}
			require.NoError(t, json.Unmarshal(raw, &op))
			for _, tag := range op.Tags {
				ops = append(ops, operation{tag: tag, id: op.OperationID})
				if !slices.Contains(tags, tag) {
					tags = append(tags, tag)
				}
			}
		}
	}
	slices.Sort(tags)
	return ops, tags
}

// plainID matches the names Swagger UI uses unescaped in element ids.
var plainID = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

func TestBrowser(t *testing.T) {
	t.Parallel()
	browser := findBrowser(t)
	ops, tags := documentOperations(t)
	require.NotEmpty(t, tags, "no tagged operations in /openapi.json")

	srv := httptest.NewServer(newMux()) // 127.0.0.1
	t.Cleanup(srv.Close)

	t.Run("ListsEveryService", func(t *testing.T) {
		t.Parallel()
		dom, console := runBrowser(t, browser, "--dump-dom", srv.URL+"/docs")
		requireCleanConsole(t, console)
		require.Contains(t, dom, `class="rapport-note"`, "not our page")
		require.NotContains(t, dom, "Failed to load API definition")
		require.NotContains(t, dom, "Fetch error")
		require.Contains(t, dom, `<h1 class="title">Rapport API`, "Swagger UI did not render the document's info")
		for _, tag := range tags {
			require.Contains(t, dom, `data-tag="`+tag+`"`, "service %s not listed", tag)
			require.Contains(t, dom, "<span>"+tag+"</span>", "service %s not listed", tag)
		}
		for _, op := range ops {
			if plainID.MatchString(op.tag) && plainID.MatchString(op.id) {
				require.Contains(t, dom, `id="operations-`+op.tag+`-`+op.id+`"`, "operation %s not listed", op.id)
			}
		}
		t.Logf("rendered %d services (%s) and %d operations", len(tags), strings.Join(tags, ", "), len(ops))
	})

	t.Run("Screenshot", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "docs.png")
		_, console := runBrowser(t, browser,
			"--screenshot="+file, "--window-size=1280,1600", "--hide-scrollbars", srv.URL+"/docs")
		requireCleanConsole(t, console)

		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		img, err := png.Decode(bytes.NewReader(raw))
		require.NoError(t, err)
		require.Equal(t, image.Rect(0, 0, 1280, 1600), img.Bounds())
		// Swagger UI's stylesheet paints GET badges #61affe: a blank page, or
		// one whose stylesheet did not apply, has none of that blue.
		getBlue := 0
		for y := 0; y < 1600; y++ {
			for x := 0; x < 1280; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				if r>>8 == 0x61 && g>>8 == 0xaf && b>>8 == 0xfe {
					getBlue++
				}
			}
		}
		require.Greater(t, getBlue, 500, "no styled GET operation in the screenshot")

		if keep := os.Getenv("RAPPORT_DOCS_SCREENSHOT"); keep != "" {
			require.NoError(t, os.WriteFile(keep, raw, 0o644))
			t.Logf("screenshot: %s", keep)
		}
	})
}
