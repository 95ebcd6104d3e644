package kibana

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strings"

	"github.com/spanflow/spanflow/internal/secret"
)

// ImportURL is the import endpoint for the configured space and overwrite.
func (c Configuration) ImportURL() string {
	base := strings.TrimRight(c.URL, "/")
	if c.Space != "" && c.Space != "default" {
		base += "/s/" + c.Space
	}
	u := base + "/api/saved_objects/_import"
	if c.Overwrite {
		u += "?overwrite=true"
	}
	return u
}

// authorization returns the Authorization header value, or "".
func (c Configuration) authorization() (string, error) {
	key, err := secret.Read(c.APIKeyFile, "SPANFLOW_KIBANA_API_KEY")
	if err != nil {
		return "", err
	}
	if key != "" {
		return "ApiKey " + key, nil
	}
	user, err := secret.Read(c.UserFile, "SPANFLOW_KIBANA_USER")
	if err != nil {
		return "", err
	}
	pass, err := secret.Read(c.PasswordFile, "SPANFLOW_KIBANA_PASSWORD")
	if err != nil {
		return "", err
	}
	if user == "" {
		return "", nil
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)), nil
}

func (c Configuration) client() (*http.Client, error) {
	if c.Transport != nil {
		return &http.Client{Transport: c.Transport, Timeout: c.Timeout}, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read Kibana CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kibana CA file %s holds no PEM certificate", c.CAFile)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: t, Timeout: c.Timeout}, nil
}

// CheckNDJSON checks that b looks like a saved objects export: one JSON
// object per non-empty line, each with a type and an id. Kibana would refuse
// anything else less clearly.
func CheckNDJSON(b []byte) error {
	n := 0
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var o struct {
			Type, ID string
		}
		if err := json.Unmarshal(line, &o); err != nil {
			return fmt.Errorf("saved objects line %d is not a JSON object: %w", i+1, err)
		}
		if o.Type == "" || o.ID == "" {
			// The export API's closing summary line has neither; Kibana's
			// import skips it.
			var summary struct {
				ExportedCount *int `json:"exportedCount"`
			}
			if json.Unmarshal(line, &summary) == nil && summary.ExportedCount != nil {
				continue
			}
			return fmt.Errorf("saved objects line %d has no type or id", i+1)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no saved object to import")
	}
	return nil
}

// ImportRequest builds the request Kibana's import API takes: POST with a
// multipart/form-data body whose "file" part is the NDJSON, and the kbn-xsrf
// header Kibana requires on every non-GET API call.
func ImportRequest(ctx context.Context, c Configuration, ndjson []byte) (*http.Request, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := CheckNDJSON(ndjson); err != nil {
		return nil, err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+File+`"`)
	h.Set("Content-Type", "application/ndjson")
	part, err := mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	if _, err := part.Write(ndjson); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.ImportURL(), &body)
	if err != nil {
		return nil, fmt.Errorf("build import request: %w", err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("kbn-xsrf", "true")
	auth, err := c.authorization()
	if err != nil {
		return nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req, nil
}

// ImportResult is Kibana's answer to an import.
type ImportResult struct {
	Success      bool          `json:"success"`
	SuccessCount int           `json:"successCount"`
	Errors       []ImportError `json:"errors"`
}

// ImportError is one object Kibana did not import.
type ImportError struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Title string `json:"title"`
	Error struct {
		Type string `json:"type"`
	} `json:"error"`
}

// Install imports the saved objects into Kibana. An object Kibana refuses
// (a conflict without --overwrite, a missing reference) makes it fail with
// the list of refused objects.
func Install(ctx context.Context, c Configuration, ndjson []byte) (ImportResult, error) {
	var res ImportResult
	req, err := ImportRequest(ctx, c, ndjson)
	if err != nil {
		return res, err
	}
	client, err := c.client()
	if err != nil {
		return res, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return res, fmt.Errorf("import saved objects into Kibana: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return res, fmt.Errorf("read Kibana's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(b))
		var e struct{ Message string }
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return res, fmt.Errorf("kibana refused the import: %s: %s", resp.Status, msg)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("kibana's import answer is not JSON: %w", err)
	}
	if !res.Success {
		var parts []string
		for _, e := range res.Errors {
			parts = append(parts, fmt.Sprintf("%s %s (%s)", e.Type, e.ID, e.Error.Type))
		}
		hint := ""
		for _, e := range res.Errors {
			if e.Error.Type == "conflict" {
				hint = "; use --overwrite to replace existing objects"
				break
			}
		}
		return res, fmt.Errorf("kibana imported %d objects and refused %d: %s%s", res.SuccessCount, len(res.Errors), strings.Join(parts, ", "), hint)
	}
	return res, nil
}

// Export writes the saved objects file into dir for editing; `spanflow
// dashboards install --file` imports an edited copy.
func Export(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	path := strings.TrimRight(dir, "/") + "/" + File
	if err := os.WriteFile(path, Objects(), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
