package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/testenv"
	"gopkg.in/yaml.v3"
)

// marker names the file that the fenced block after it must equal.
var marker = regexp.MustCompile(`^<!-- file: (\S+) -->$`)

// TestDocSnippetsAreTheFiles keeps docs/deploy.md from drifting: a block
// shown as a file is that file, byte for byte, so what a reader copies is
// what CI checked.
func TestDocSnippetsAreTheFiles(t *testing.T) {
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	snippets, err := fileSnippets(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(snippets) == 0 {
		t.Fatal("docs/deploy.md marks no snippet with <!-- file: PATH -->")
	}
	for _, s := range snippets {
		want, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(s.path)))
		if err != nil {
			t.Errorf("docs/deploy.md:%d names %s: %v", s.line, s.path, err)
			continue
		}
		if s.body != string(want) {
			t.Errorf("docs/deploy.md:%d: the block differs from %s; paste the file again:\n%s", s.line, s.path, firstDifference(s.body, string(want)))
		}
	}
}

type snippet struct {
	path, body string
	line       int
}

// fileSnippets returns every fenced block that follows a marker line (a
// blank line may come between them).
func fileSnippets(doc string) ([]snippet, error) {
	lines := strings.SplitAfter(doc, "\n")
	var out []snippet
	for i := 0; i < len(lines); i++ {
		m := marker.FindStringSubmatch(strings.TrimRight(lines[i], "\n"))
		if m == nil {
			continue
		}
		at := i + 1
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j == len(lines) || !strings.HasPrefix(lines[j], "```") {
			return nil, errors.New("docs/deploy.md:" + strconv.Itoa(at) + ": the marker for " + m[1] + " is not followed by a fenced block")
		}
		fence := strings.TrimRight(lines[j], "\n")
		fence = fence[:len(fence)-len(strings.TrimLeft(fence, "`"))]
		var body strings.Builder
		k := j + 1
		for ; k < len(lines) && strings.TrimRight(lines[k], "\n") != fence; k++ {
			body.WriteString(lines[k])
		}
		if k == len(lines) {
			return nil, errors.New("docs/deploy.md:" + strconv.Itoa(j+1) + ": the block for " + m[1] + " is never closed")
		}
		out = append(out, snippet{path: m[1], body: body.String(), line: at})
		i = k
	}
	return out, nil
}

func TestFileSnippetsFindsDrift(t *testing.T) {
	doc := "x\n<!-- file: a.txt -->\n\n````yaml\nk: v\n```\n````\n<!-- file: b.txt -->\nno block\n"
	if _, err := fileSnippets(doc); err == nil || !strings.Contains(err.Error(), "b.txt") {
		t.Fatalf("a marker without a block: got %v, want an error naming b.txt", err)
	}
	got, err := fileSnippets(doc[:strings.Index(doc, "<!-- file: b")])
	if err != nil {
		t.Fatal(err)
	}
	want := []snippet{{path: "a.txt", body: "k: v\n```\n", line: 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// firstDifference shows the first line where got and want part.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + " of the block:\n  doc:  " + gl + "\n  file: " + wl
		}
	}
	return "(a difference in the last newline)"
}

// yamlFiles returns every .yaml and .yml file under deploy/, by path.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			out = append(out, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// documents decodes every YAML document of a file.
func documents(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// at walks a decoded YAML tree: string keys for mappings, int indexes for
// sequences. It fails t when the path does not exist.
func at(t *testing.T, what string, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok || m[k] == nil {
				t.Fatalf("%s: no %v", what, path)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("%s: no %v", what, path)
			}
			v = s[k]
		}
	}
	return v
}

func TestYAMLShapes(t *testing.T) {
	files := yamlFiles(t)
	var manifests int
	for _, f := range files {
		docs := documents(t, f)
		if len(docs) == 0 {
			t.Errorf("%s holds no YAML document", f)
		}
		if !strings.HasPrefix(f, "kubernetes/") {
			continue
		}
		for _, d := range docs {
			manifests++
			if s, _ := d["apiVersion"].(string); s == "" {
				t.Errorf("%s: a document has no apiVersion", f)
			}
			kind, _ := d["kind"].(string)
			if kind == "" {
				t.Errorf("%s: a document has no kind", f)
			}
			if kind == "Deployment" {
				checkDeployment(t, f, d)
			}
		}
	}
	if manifests < 6 {
		t.Errorf("found %d Kubernetes manifests under deploy/kubernetes, want at least 6", manifests)
	}

	compose := documents(t, "compose/compose.yaml")[0]
	services, _ := compose["services"].(map[string]any)
	for _, name := range []string{"keyway-1", "keyway-2", "keyway-3", "nginx", "postgres", "redis"} {
		if services[name] == nil {
			t.Errorf("compose.yaml has no service %s", name)
		}
	}
	for _, name := range []string{"keyway-1", "keyway-2", "keyway-3"} {
		// The merge key must have given each node the shared settings.
		if img, _ := at(t, "compose.yaml", services, name, "image").(string); img != "localhost/keyway:latest" {
			t.Errorf("compose.yaml: %s runs image %q", name, img)
		}
	}
}

func checkDeployment(t *testing.T, file string, d map[string]any) {
	t.Helper()
	if r, _ := at(t, file, d, "spec", "replicas").(int); r != 3 {
		t.Errorf("%s: %d replicas, want 3", file, r)
	}
	pod := at(t, file, d, "spec", "template", "spec")
	if v, _ := at(t, file, pod, "securityContext", "runAsNonRoot").(bool); !v {
		t.Errorf("%s: runAsNonRoot is not true", file)
	}
	c := at(t, file, pod, "containers", 0)
	for probe, path := range map[string]string{"readinessProbe": "/.keyway/readyz", "livenessProbe": "/.keyway/healthz"} {
		if got, _ := at(t, file, c, probe, "httpGet", "path").(string); got != path {
			t.Errorf("%s: %s asks %q, want %q", file, probe, got, path)
		}
		if got, _ := at(t, file, c, probe, "httpGet", "scheme").(string); got != "HTTPS" {
			t.Errorf("%s: %s uses scheme %q: keyway only speaks HTTPS", file, probe, got)
		}
	}
	sc := at(t, file, c, "securityContext")
	if v, _ := at(t, file, sc, "readOnlyRootFilesystem").(bool); !v {
		t.Errorf("%s: the root file system is writable", file)
	}
	if v, ok := at(t, file, sc, "allowPrivilegeEscalation").(bool); !ok || v {
		t.Errorf("%s: allowPrivilegeEscalation is not false", file)
	}
	if drop, _ := at(t, file, sc, "capabilities", "drop").([]any); !slices.Contains(drop, any("ALL")) {
		t.Errorf("%s: capabilities are not all dropped", file)
	}
}

// configCheck is how one keyway config under deploy/ must pass keyway
// check: with these variables set, and no warning but those listed.
type configCheck struct {
	env     []string
	flags   []string
	allowed []string
}

// configChecks mirrors scripts/check-deploy.sh, which says why each
// warning is expected.
var configChecks = map[string]configCheck{
	"container/keyway.yaml": {allowed: []string{"listen-local-ca"}},
	"keyway.yaml":           {flags: []string{"--production"}},
	"compose/keyway.yaml": {
		env:     []string{"KEYWAY_STORE_DSN=postgres://keyway:dummy@postgres:5432/keyway?sslmode=disable"},
		allowed: []string{"redis-no-tls", "dsn-sslmode"},
	},
	"kubernetes/configmap.yaml": {env: []string{
		"KEYWAY_STORE_DSN=postgres://keyway:dummy@postgres.example.internal:5432/keyway?sslmode=verify-full",
		"KEYWAY_REDIS_ADDR=redis.example.internal:6380",
	}},
}

func TestKeywayCheckAcceptsEveryConfig(t *testing.T) {
	goTool := testenv.LookPath(t, "go", "install Go to build cmd/keyway")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "keyway")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/keyway")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keyway: %v\n%s", err, out)
	}

	var found []string
	for _, f := range yamlFiles(t) {
		if filepath.Base(f) == "keyway.yaml" {
			found = append(found, f)
		}
	}
	found = append(found, "kubernetes/configmap.yaml")
	for _, f := range found {
		if _, ok := configChecks[f]; !ok {
			t.Errorf("%s is a keyway config that no check covers: add it to configChecks and to scripts/check-deploy.sh", f)
		}
	}

	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for file, cc := range configChecks {
		t.Run(file, func(t *testing.T) {
			path := file
			if file == "kubernetes/configmap.yaml" {
				path = filepath.Join(t.TempDir(), "keyway.yaml")
				cm := documents(t, file)[0]
				body, _ := at(t, file, cm, "data", "keyway.yaml").(string)
				if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.CommandContext(ctx, bin, append([]string{"check", "--config", path, "-o", "json"}, cc.flags...)...)
			// Only what the deployment gives by environment: a variable
			// from the developer's shell must not change the verdict.
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
				"KEYWAY_PEPPER=" + secret, "KEYWAY_KEK=" + secret, "KEYWAY_AUDIT_KEY=" + secret}, cc.env...)
			out, err := cmd.Output()
			var res struct {
				OK       bool `json:"ok"`
				Findings []struct {
					Severity, Code, Message string
				} `json:"findings"`
			}
			if jerr := json.Unmarshal(out, &res); jerr != nil {
				t.Fatalf("keyway check: %v, %v\n%s", err, jerr, out)
			}
			for _, f := range res.Findings {
				if f.Severity == "error" || !slices.Contains(cc.allowed, f.Code) {
					t.Errorf("%s %s: %s", f.Severity, f.Code, f.Message)
				}
			}
			if err != nil || !res.OK {
				t.Errorf("keyway check --config %s: exit %v, ok %v", file, err, res.OK)
			}
		})
	}
}

// TestCheckDeployScriptCoversTheSameConfigs keeps the script's list and
// configChecks together.
func TestCheckDeployScriptCoversTheSameConfigs(t *testing.T) {
	script, err := os.ReadFile("../scripts/check-deploy.sh")
	if err != nil {
		t.Fatal(err)
	}
	for file := range configChecks {
		if !strings.Contains(string(script), "deploy/"+file) {
			t.Errorf("scripts/check-deploy.sh never names deploy/%s", file)
		}
	}
}
