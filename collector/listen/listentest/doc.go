// Package listentest makes what the tests of the listeners need: the IPFIX
// messages the spanflow exporter's encoder sends.
package listentest
