package kibana

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// Configuration says how to reach Kibana. Secrets come from files or the
// environment, never from command-line values.
type Configuration struct {
	URL string // Kibana's base URL, e.g. https://kibana.example:5601
	// Space is the Kibana space to import into; empty or "default" is the
	// default space.
	Space string
	// Overwrite replaces saved objects that already exist (same id).
	Overwrite bool
	// APIKeyFile, UserFile, PasswordFile name files holding the credential;
	// SPANFLOW_KIBANA_API_KEY, SPANFLOW_KIBANA_USER and
	// SPANFLOW_KIBANA_PASSWORD are used when the files are not given. An API
	// key wins over user and password.
	APIKeyFile, UserFile, PasswordFile string
	CAFile                             string // PEM CA for HTTPS
	Timeout                            time.Duration
	Transport                          http.RoundTripper // tests only
}

// DefaultConfiguration reaches Kibana on localhost, default space.
func DefaultConfiguration() Configuration {
	return Configuration{URL: "http://127.0.0.1:5601", Timeout: 60 * time.Second}
}

var spaceID = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Validate checks the configuration.
func (c Configuration) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return fmt.Errorf("no Kibana URL: give --kibana-url")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("kibana URL %q: want http(s)://host:port", c.URL)
	case c.Space != "" && !spaceID.MatchString(c.Space):
		return fmt.Errorf("kibana space %q: a space id is lower case letters, digits, _ and -", c.Space)
	}
	return nil
}
