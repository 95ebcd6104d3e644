package kafkaconn

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

func TestTopicNameCarriesTheVersion(t *testing.T) {
	if got := DefaultConfiguration().TopicName(); got != "spanflow-flows-v1" {
		t.Errorf("topic %q", got)
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*Configuration)
		want string
	}{
		"no brokers":      {func(c *Configuration) { c.Brokers = nil }, "kafka-brokers: give at least one"},
		"no port":         {func(c *Configuration) { c.Brokers = []string{"kafka1"} }, `kafka-brokers: "kafka1": want HOST:PORT`},
		"port too big":    {func(c *Configuration) { c.Brokers = []string{"127.0.0.1:99999"} }, `kafka-brokers: "127.0.0.1:99999": port 99999: want a number from 1 to 65535`},
		"port not number": {func(c *Configuration) { c.Brokers = []string{"kafka1:kafka"} }, `port kafka: want a number`},
		"bad topic":       {func(c *Configuration) { c.Topic = "a b" }, "kafka-topic:"},
		"bad sasl":        {func(c *Configuration) { c.SASL = "gssapi" }, "kafka-sasl:"},
		"cert no key":     {func(c *Configuration) { c.TLS, c.CertFile = true, "c.pem" }, "kafka-cert-file: a client certificate needs both"},
		"ca without tls":  {func(c *Configuration) { c.CAFile = "ca.pem" }, "kafka-tls:"},
		"negative dialer": {func(c *Configuration) { c.DialTimeout = -1 }, "kafka-dial-timeout:"},
	} {
		c := DefaultConfiguration()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if _, err := c.Options(); err == nil {
			t.Errorf("%s: Options accepted it", name)
		}
	}
	if err := DefaultConfiguration().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// The TLS settings make a client that a server requiring certificates of
// the same CA accepts; without the client certificate it is refused.
func TestTLSClientCertificate(t *testing.T) {
	ca := testutil.NewCA(t, "kafka-ca")
	server, client := ca.Server(t, "broker"), ca.Client(t, "collector")
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{server.TLS},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	dial := func(c Configuration) error {
		tc, err := c.tlsConfig()
		if err != nil {
			return err
		}
		tc.ServerName = "127.0.0.1"
		conn, err := tls.Dial("tcp", l.Addr().String(), tc)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Read(make([]byte, 1)) // the server's verdict on our certificate
		return err
	}
	c := DefaultConfiguration()
	c.TLS, c.CAFile, c.CertFile, c.KeyFile = true, ca.File, client.CertFile, client.KeyFile
	if err := dial(c); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	c.CertFile, c.KeyFile = "", ""
	if err := dial(c); err == nil {
		t.Fatal("accepted without a client certificate")
	}
	c.CAFile = filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(c.CAFile, []byte("not a certificate"), 0o600)
	if _, err := c.tlsConfig(); err == nil || !strings.Contains(err.Error(), "kafka-ca-file:") {
		t.Fatalf("a CA file without PEM: err = %v", err)
	}
}

func TestSASLCredentials(t *testing.T) {
	t.Setenv("SPANFLOW_KAFKA_USER", "")
	t.Setenv("SPANFLOW_KAFKA_PASSWORD", "")
	c := DefaultConfiguration()
	c.SASL = "scram-sha-512"
	if _, err := c.Options(); err == nil || !strings.Contains(err.Error(), "needs a user and a password") {
		t.Fatalf("no credentials: err = %v", err)
	}
	t.Setenv("SPANFLOW_KAFKA_USER", "spanflow")
	t.Setenv("SPANFLOW_KAFKA_PASSWORD", "s3cret")
	for sasl, name := range map[string]string{"plain": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512"} {
		c.SASL = sasl
		m, err := c.mechanism()
		if err != nil || m.Name() != name {
			t.Errorf("%s: %v, %v", sasl, m, err)
		}
	}
	dir := t.TempDir()
	c.UserFile, c.PasswordFile = filepath.Join(dir, "user"), filepath.Join(dir, "missing")
	os.WriteFile(c.UserFile, []byte("spanflow\n"), 0o600)
	if _, err := c.mechanism(); err == nil || !strings.Contains(err.Error(), "kafka-password-file:") {
		t.Errorf("missing password file: err = %v", err)
	}
}
