// Package esconn connects to Elasticsearch for every part of spanflow that
// talks to it: the collector's Elasticsearch output, `spanflow es setup` and
// `prune`, reports, the demo. New builds the client from one Configuration
// (TLS trust by CA file or fingerprint, client certificates, credentials read
// with internal/secret from files or the environment, never from a URL nor
// sent in clear text unless asked, response timeout, gzip, retries), Ping
// checks that the cluster answers, and Redacted hides credentials in URLs for
// logs and errors.
package esconn

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/internal/secret"
)

// Configuration says how to reach a cluster. Secrets come from the environment
// or from files, never from command-line values.
type Configuration struct {
	URLs []string
	// CAFile is a PEM file of the CA that signed the cluster's certificate;
	// Fingerprint is the SHA-256 hex fingerprint of that CA, as Elasticsearch
	// prints it at first start. Either is enough for HTTPS.
	CAFile      string
	Fingerprint string
	// APIKeyFile, UserFile, PasswordFile name files holding the credential;
	// SPANFLOW_ES_API_KEY, SPANFLOW_ES_USER and SPANFLOW_ES_PASSWORD are used
	// when the files are not given.
	APIKeyFile, UserFile, PasswordFile string
	// Timeout bounds the wait for a response's headers (a hung cluster must
	// not hold a bulk flush forever); 0 means no bound.
	Timeout time.Duration
	// Compress gzips request bodies at level 1 (bulk requests of flow
	// documents shrink about tenfold).
	Compress bool
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// clusters that authenticate clients by certificate (PKI realm).
	CertFile, KeyFile string
	// AllowInsecureCredentials sends credentials to http:// URLs, where
	// anyone on the path reads them; without it that is refused.
	AllowInsecureCredentials bool
	// MaxRetries is how often the transport retries a request that failed to
	// connect or got 429/502/503/504, waiting RetryBackoff(attempt) between
	// tries; 0 keeps the client's default (3).
	MaxRetries   int
	RetryBackoff func(attempt int) time.Duration
	Transport    http.RoundTripper // tests only
}

// DefaultConfiguration reaches a cluster on localhost.
func DefaultConfiguration() Configuration {
	return Configuration{URLs: []string{"http://127.0.0.1:9200"}, Timeout: 30 * time.Second}
}

// CheckURL says what is wrong with an Elasticsearch URL, in one line: above
// all a HOST:PORT without its scheme, which is what people type first.
func CheckURL(s string) error {
	if !strings.Contains(s, "://") && !strings.Contains(s, "@") {
		if _, port, err := net.SplitHostPort(s); err == nil && port != "" && strings.Trim(port, "0123456789") == "" {
			return fmt.Errorf("Elasticsearch URL %s has no scheme: use http://%s or https://%s", s, s, s)
		}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("Elasticsearch URL %q: want http://HOST:PORT or https://HOST:PORT", Redacted([]string{s})[0])
	}
	return nil
}

// Validate checks the URLs and the client certificate's files, and that
// credentials would not be sent in clear text. It reads the credential
// files, so an unreadable one fails at start.
func (c Configuration) Validate() error {
	if len(c.URLs) == 0 {
		return fmt.Errorf("no Elasticsearch URL: give --es-url")
	}
	plain := ""
	for _, s := range c.URLs {
		if err := CheckURL(s); err != nil {
			return err
		}
		u, _ := url.Parse(s)
		if u.User != nil {
			return fmt.Errorf("Elasticsearch URL %s holds credentials, which ps and logs would show: "+
				"give them in SPANFLOW_ES_API_KEY or SPANFLOW_ES_USER/SPANFLOW_ES_PASSWORD, or in --es-api-key-file / --es-user-file / --es-password-file",
				Redacted([]string{s})[0])
		}
		if u.Scheme == "http" && plain == "" {
			plain = s
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("es-cert-file: a client certificate needs both --es-cert-file and --es-key-file")
	}
	creds, err := c.credentials()
	if err != nil {
		return err
	}
	if plain != "" && !c.AllowInsecureCredentials && (creds.apiKey != "" || creds.user != "" || creds.password != "") {
		return fmt.Errorf("credentials would go in clear text to %s: use https://, or say --es-allow-insecure-credentials", plain)
	}
	// The files New reads, read now so that a check says what a start
	// would.
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("es-ca-file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("es-ca-file: %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			return fmt.Errorf("es-cert-file: %w", err)
		}
	}
	return nil
}

type credentials struct{ apiKey, user, password string }

// credentials reads the API key, user and password from their files, else
// from the environment.
func (c Configuration) credentials() (credentials, error) {
	var cr credentials
	var err error
	if cr.apiKey, err = secret.Read(c.APIKeyFile, "SPANFLOW_ES_API_KEY"); err != nil {
		return cr, fmt.Errorf("es-api-key-file: %w", err)
	}
	if cr.user, err = secret.Read(c.UserFile, "SPANFLOW_ES_USER"); err != nil {
		return cr, fmt.Errorf("es-user-file: %w", err)
	}
	if cr.password, err = secret.Read(c.PasswordFile, "SPANFLOW_ES_PASSWORD"); err != nil {
		return cr, fmt.Errorf("es-password-file: %w", err)
	}
	return cr, nil
}

// New returns a client for the configuration. It does not contact the cluster.
func New(c Configuration) (*elasticsearch.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	cfg := elasticsearch.Config{Addresses: c.URLs, Transport: c.Transport, CertificateFingerprint: c.Fingerprint,
		// Level 1: most of gzip's saving on repetitive JSON for a fraction
		// of the CPU of the default level (Beats use 1 too).
		CompressRequestBody: c.Compress, CompressRequestBodyLevel: gzip.BestSpeed, PoolCompressor: true,
		MaxRetries: c.MaxRetries, RetryBackoff: c.RetryBackoff,
		RetryOnStatus: []int{429, 502, 503, 504}}
	if cfg.Transport == nil {
		// The client configures TLS (CA, fingerprint) on an *http.Transport it
		// is given, so a clone of the default keeps that working.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = c.Timeout
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		t.MaxIdleConnsPerHost = 16
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second} // as http.DefaultTransport's
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return wrapRaw(c), nil
		}
		cfg.Transport = t
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read Elasticsearch CA file: %w", err)
		}
		cfg.CACert = pem
	}
	cfg.APIKey, cfg.Username, cfg.Password = creds.apiKey, creds.user, creds.password
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("read Elasticsearch client certificate: %w", err)
		}
		t, ok := cfg.Transport.(*http.Transport)
		if !ok {
			return nil, fmt.Errorf("a client certificate needs an *http.Transport")
		}
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Elasticsearch client: %w", err)
	}
	return client, nil
}

// Ping checks that the cluster answers and is Elasticsearch (the client's
// product check runs on the first request). When it does not answer, or
// answers 429/5xx, the error is an *UnreachableError (see Unreachable);
// when it answers and is not Elasticsearch, a *NotElasticsearchError.
func Ping(ctx context.Context, client *elasticsearch.Client) error {
	res, err := client.Cluster.Health(client.Cluster.Health.WithContext(ctx))
	if err != nil {
		err = fmt.Errorf("reach Elasticsearch: %w", err)
		if ctx.Err() == nil && isProductCheck(err) {
			return &NotElasticsearchError{err} // it answered, and is not Elasticsearch
		}
		return &UnreachableError{err}
	}
	defer res.Body.Close()
	if res.IsError() {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		err := fmt.Errorf("reach Elasticsearch: %w", StatusError(res.Status(), body))
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 {
			return &UnreachableError{err}
		}
		return err
	}
	return nil
}

// isProductCheck tells the client's "not Elasticsearch" refusal from a
// failure to connect.
func isProductCheck(err error) bool {
	return strings.Contains(err.Error(), "not Elasticsearch") || strings.Contains(err.Error(), "unknown product")
}

// Redacted returns the URLs with any user:password@ part replaced, for
// logs and error messages.
func Redacted(urls []string) []string {
	out := make([]string, len(urls))
	for i, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			out[i] = "(unparsable URL)"
			continue
		}
		if u.User != nil {
			u.User = url.User("REDACTED")
		}
		out[i] = u.String()
	}
	return out
}
