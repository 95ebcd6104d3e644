// Package listentest makes what the tests of the listeners need: the IPFIX
// messages the spanflow exporter's encoder sends, and a CA whose
// certificates are written as PEM files, as an operator would give them to
// the collector and the exporters.
package listentest
