package kibana

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kibanaImport answers like Kibana's POST /api/saved_objects/_import after
// checking the request the way Kibana's route validates it (documented at
// https://www.elastic.co/docs/api/doc/kibana/v8/operation/operation-importsavedobjectsdefault):
// multipart/form-data with a "file" part named *.ndjson, the kbn-xsrf header,
// the overwrite query parameter, the space in the /s/<space> path prefix.
type kibanaImport struct {
	t        *testing.T
	space    string
	overwite bool
	auth     string
	answer   string // JSON answer; empty: success
	status   int
	got      []byte
	calls    int
}

func (k *kibanaImport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.calls++
	fail := func(status int, msg string) {
		k.t.Errorf("import request: %s", msg)
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"statusCode":%d,"error":"Bad Request","message":%q}`, status, msg)
	}
	wantPath := "/api/saved_objects/_import"
	if k.space != "" {
		wantPath = "/s/" + k.space + wantPath
	}
	if r.Method != http.MethodPost || r.URL.Path != wantPath {
		fail(http.StatusNotFound, fmt.Sprintf("%s %s, want POST %s", r.Method, r.URL.Path, wantPath))
		return
	}
	q := r.URL.Query()
	if got := q.Get("overwrite"); (got == "true") != k.overwite || (got != "" && got != "true") {
		fail(http.StatusBadRequest, fmt.Sprintf("overwrite=%q, want %t", got, k.overwite))
		return
	}
	for key := range q {
		if key != "overwrite" {
			fail(http.StatusBadRequest, "unexpected query parameter "+key)
			return
		}
	}
	if r.Header.Get("kbn-xsrf") == "" {
		fail(http.StatusBadRequest, "Request must contain a kbn-xsrf header.")
		return
	}
	if got := r.Header.Get("Authorization"); got != k.auth {
		fail(http.StatusUnauthorized, fmt.Sprintf("Authorization %q, want %q", got, k.auth))
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		fail(http.StatusUnsupportedMediaType, "content type "+r.Header.Get("Content-Type"))
		return
	}
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		fail(http.StatusBadRequest, "multipart body: "+err.Error())
		return
	}
	files := r.MultipartForm.File["file"]
	if len(files) != 1 || len(r.MultipartForm.File) != 1 || len(r.MultipartForm.Value) != 0 {
		fail(http.StatusBadRequest, fmt.Sprintf("want exactly one form field, the file part \"file\"; got files %v values %v", r.MultipartForm.File, r.MultipartForm.Value))
		return
	}
	if filepath.Ext(files[0].Filename) != ".ndjson" {
		fail(http.StatusUnsupportedMediaType, "Invalid file extension "+files[0].Filename)
		return
	}
	f, err := files[0].Open()
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	defer f.Close()
	k.got, _ = io.ReadAll(f)
	status := k.status
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if k.answer != "" {
		io.WriteString(w, k.answer)
		return
	}
	n := bytes.Count(bytes.TrimSpace(k.got), []byte("\n")) + 1
	fmt.Fprintf(w, `{"success":true,"successCount":%d,"successResults":[],"warnings":[]}`, n)
}

func TestInstallRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		space     string
		overwrite bool
		env       map[string]string
		files     map[string]string // flag -> content
		auth      string
	}{
		{name: "default space, no credentials"},
		{name: "space and overwrite, api key from env", space: "network-team", overwrite: true,
			env: map[string]string{"SPANFLOW_KIBANA_API_KEY": "a2V5OnNlY3JldA=="}, auth: "ApiKey a2V5OnNlY3JldA=="},
		{name: "user and password from files", overwrite: true,
			files: map[string]string{"user": "elastic\n", "password": "pa:ss\n"},
			auth:  "Basic " + base64.StdEncoding.EncodeToString([]byte("elastic:pa:ss"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"SPANFLOW_KIBANA_API_KEY", "SPANFLOW_KIBANA_USER", "SPANFLOW_KIBANA_PASSWORD"} {
				t.Setenv(k, tc.env[k])
			}
			k := &kibanaImport{t: t, space: tc.space, overwite: tc.overwrite, auth: tc.auth}
			srv := httptest.NewServer(k)
			defer srv.Close()
			c := DefaultConfiguration()
			c.URL, c.Space, c.Overwrite = srv.URL+"/", tc.space, tc.overwrite
			dir := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				switch name {
				case "user":
					c.UserFile = p
				case "password":
					c.PasswordFile = p
				}
			}
			res, err := Install(context.Background(), c, Objects())
			if err != nil {
				t.Fatal(err)
			}
			if k.calls != 1 || !bytes.Equal(k.got, Objects()) {
				t.Errorf("Kibana got %d requests and a file of %d bytes, want 1 request with the %d-byte objects file", k.calls, len(k.got), len(Objects()))
			}
			if want := bytes.Count(Objects(), []byte("\n")); res.SuccessCount != want {
				t.Errorf("success count %d, want %d", res.SuccessCount, want)
			}
		})
	}
}

func TestInstallErrors(t *testing.T) {
	t.Setenv("SPANFLOW_KIBANA_API_KEY", "")
	t.Setenv("SPANFLOW_KIBANA_USER", "")
	conflict := `{"success":false,"successCount":40,"errors":[{"id":"spanflow-overview","type":"dashboard","title":"spanflow: Overview","meta":{},"error":{"type":"conflict"}},{"id":"spanflow-flows","type":"index-pattern","title":"spanflow-flows-*","meta":{},"error":{"type":"conflict"}}]}`
	k := &kibanaImport{t: t, answer: conflict}
	srv := httptest.NewServer(k)
	defer srv.Close()
	c := DefaultConfiguration()
	c.URL = srv.URL
	_, err := Install(context.Background(), c, Objects())
	if err == nil || !strings.Contains(err.Error(), "refused 2") || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("conflict answer gave %v", err)
	}

	k2 := &kibanaImport{t: t, status: http.StatusUnauthorized, answer: `{"statusCode":401,"error":"Unauthorized","message":"[security_exception] missing authentication credentials"}`}
	srv2 := httptest.NewServer(k2)
	defer srv2.Close()
	c.URL = srv2.URL
	if _, err := Install(context.Background(), c, Objects()); err == nil || !strings.Contains(err.Error(), "missing authentication credentials") {
		t.Errorf("401 gave %v", err)
	}

	for _, bad := range []Configuration{{URL: ""}, {URL: "kibana:5601"}, {URL: "http://k:5601", Space: "Bad Space"}} {
		if _, err := Install(context.Background(), bad, Objects()); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestCheckNDJSON(t *testing.T) {
	if err := CheckNDJSON(Objects()); err != nil {
		t.Errorf("built-in objects: %v", err)
	}
	exported := append(Objects(), []byte(`{"excludedObjects":[],"excludedObjectsCount":0,"exportedCount":42,"missingRefCount":0,"missingReferences":[]}`+"\n")...)
	if err := CheckNDJSON(exported); err != nil {
		t.Errorf("export with summary line: %v", err)
	}
	for _, bad := range []string{"", "\n\n", "{\"type\":\"lens\"", `{"type":"lens"}`, "[1,2]", "<html>"} {
		if err := CheckNDJSON([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	p, err := Export(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, Objects()) || filepath.Base(p) != File {
		t.Errorf("export wrote %s (%d bytes, err %v)", p, len(b), err)
	}
}

// FuzzCheckNDJSON: any file given to install --file gets an answer, never a
// panic.
func FuzzCheckNDJSON(f *testing.F) {
	f.Add(Objects())
	f.Add([]byte(`{"type":"lens","id":"x"}` + "\n" + `{"exportedCount":1}`))
	f.Add([]byte("{\n}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = CheckNDJSON(b)
	})
}
