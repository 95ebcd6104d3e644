// Package kafkaconn connects to Kafka for both roles of the scale-out path:
// the collector's Kafka output (producer) and the indexer (consumer group).
// It turns one Configuration (brokers, topic, TLS, SASL/SCRAM with secrets
// read from files or the environment) into franz-go client options, and
// names the topic with the wire encoding's version.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/secret"
)

// Configuration says how to reach the brokers and which topic carries the
// flows.
type Configuration struct {
	Brokers []string // HOST:PORT of one or more bootstrap brokers
	// Topic is the topic's base name; the version of the wire encoding is
	// appended (spanflow-flows → spanflow-flows-v1), so collectors and
	// indexers of different encodings never share a topic.
	Topic string
	// TLS turns TLS on; CAFile (else the system's CAs), CertFile and KeyFile
	// (a client certificate) refine it.
	TLS                       bool
	CAFile, CertFile, KeyFile string
	// SASL is "", "plain", "scram-sha-256" or "scram-sha-512"; the user and
	// password come from UserFile and PasswordFile, else from
	// SPANFLOW_KAFKA_USER and SPANFLOW_KAFKA_PASSWORD.
	SASL                   string
	UserFile, PasswordFile string
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
}

// DefaultTopic is the topic's base name.
const DefaultTopic = "spanflow-flows"

// DefaultConfiguration is a broker on this machine, no TLS, no SASL.
func DefaultConfiguration() Configuration {
	return Configuration{Brokers: []string{"127.0.0.1:9092"}, Topic: DefaultTopic, DialTimeout: 10 * time.Second}
}

// TopicName is the topic records go to: the base name and the version of
// the wire encoding.
func (c Configuration) TopicName() string {
	return c.Topic + "-v" + strconv.Itoa(flow.WireVersion)
}

// Validate checks the settings without contacting the brokers; the
// messages start with the flag's name.
func (c Configuration) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka-brokers: give at least one HOST:PORT"))
	}
	for _, b := range c.Brokers {
		_, port, err := net.SplitHostPort(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka-brokers: %q: want HOST:PORT", b))
			continue
		}
		// A port no broker can have would only show as endless dial
		// retries once running.
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			errs = append(errs, fmt.Errorf("kafka-brokers: %q: port %s: want a number from 1 to 65535", b, port))
		}
	}
	if c.Topic == "" || strings.ContainsAny(c.Topic, " /\\,:") || len(c.Topic) > 200 {
		errs = append(errs, fmt.Errorf("kafka-topic: %q is not a usable topic name", c.Topic))
	}
	switch c.SASL {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		// The credentials Options reads, read now, as the TLS files
		// below: a check says what a start would.
		if _, err := c.mechanism(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("kafka-sasl: %q: use plain, scram-sha-256 or scram-sha-512", c.SASL))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("kafka-cert-file: a client certificate needs both --kafka-cert-file and --kafka-key-file"))
	}
	if !c.TLS && (c.CAFile != "" || c.CertFile != "") {
		errs = append(errs, errors.New("kafka-tls: --kafka-ca-file and --kafka-cert-file need --kafka-tls"))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, errors.New("kafka-dial-timeout: must not be negative"))
	}
	if c.TLS && (c.CertFile == "") == (c.KeyFile == "") {
		// The files Options reads, read now so that a check says what a
		// start would.
		if _, err := c.tlsConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Options are the client options for the brokers, TLS and SASL; the
// caller adds those of its role (producer or consumer group).
func (c Configuration) Options() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.DialTimeout > 0 {
		opts = append(opts, kgo.DialTimeout(c.DialTimeout))
	}
	if c.TLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL != "" {
		m, err := c.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (c Configuration) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka-ca-file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka-ca-file: %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka-cert-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (c Configuration) mechanism() (sasl.Mechanism, error) {
	user, err := secret.Read(c.UserFile, "SPANFLOW_KAFKA_USER")
	if err != nil {
		return nil, fmt.Errorf("kafka-user-file: %w", err)
	}
	pass, err := secret.Read(c.PasswordFile, "SPANFLOW_KAFKA_PASSWORD")
	if err != nil {
		return nil, fmt.Errorf("kafka-password-file: %w", err)
	}
	if user == "" || pass == "" {
		return nil, fmt.Errorf("kafka-sasl: %s needs a user and a password (--kafka-user-file and --kafka-password-file, or SPANFLOW_KAFKA_USER and SPANFLOW_KAFKA_PASSWORD)", c.SASL)
	}
	switch c.SASL {
	case "plain":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
}

// EnsureTopic creates the topic with partitions partitions and replicas
// replicas unless it exists; a topic that exists is left as it is (its
// partition count is the operator's).
func EnsureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32, replicas int16) error {
	adm := kadm.NewClient(cl)
	res, err := adm.CreateTopic(ctx, partitions, replicas, nil, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// CheckTopic returns nil when the topic exists; a topic the brokers do not
// know gives an error wrapping kerr.UnknownTopicOrPartition.
func CheckTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	_, err := TopicID(ctx, cl, topic)
	return err
}

// TopicID returns the topic's id (zero from brokers older than Kafka 2.8),
// which changes when the topic is deleted and created again; a topic the
// brokers do not know gives an error wrapping kerr.UnknownTopicOrPartition.
func TopicID(ctx context.Context, cl *kgo.Client, topic string) ([16]byte, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return [16]byte{}, fmt.Errorf("look up topic %s: %w", topic, err)
	}
	if err := td[topic].Err; err != nil {
		return [16]byte{}, fmt.Errorf("look up topic %s: %w", topic, err)
	}
	return td[topic].ID, nil
}
