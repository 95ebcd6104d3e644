// Command essink stands in for an Elasticsearch cluster in the whole-process
// benchmarks under bench/: it answers the collector's start-up questions
// as Elasticsearch 8 does (version, product header), takes every bulk
// request, answers that every document was created (the short answer the
// output asks for with its filter_path), and counts the flow documents
// (not the collector's statistics and rollup documents). Its CPU
// is its own process's, so the collector's CPU is what it costs to get
// from a received datagram to a bulk request's body on the wire. It writes
// the documents taken so far to -count-file every 100 ms.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on; the chosen one is printed")
	countFile := flag.String("count-file", "", "file to write the documents taken so far to, every 100 ms")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "essink:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	var docs atomic.Int64
	if *countFile != "" {
		go func() {
			for range time.Tick(100 * time.Millisecond) {
				os.WriteFile(*countFile, []byte(strconv.FormatInt(docs.Load(), 10)+"\n"), 0o644)
			}
		}()
	}
	created := []byte(`{"create":{"status":201}}`)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/_bulk" {
			fmt.Fprint(w, `{"version":{"number":"8.19.7"}}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte{'\n'}) / 2 // an action line and a document each
		flows := n
		// The collector's own statistics and rollup documents are not flows.
		for rest := body; len(rest) > 0; {
			action, doc := line(&rest), line(&rest)
			if bytes.Contains(action, []byte("spanflow-rollups")) || bytes.Contains(doc, []byte(`"kind":"metric"`)) {
				flows--
			}
		}
		var out bytes.Buffer
		out.Grow(32 + n*(len(created)+1))
		out.WriteString(`{"errors":false,"items":[`)
		for i := range n {
			if i > 0 {
				out.WriteByte(',')
			}
			out.Write(created)
		}
		out.WriteString(`]}`)
		w.Write(out.Bytes())
		docs.Add(int64(flows))
	}))
}

// line takes the first line off *b.
func line(b *[]byte) []byte {
	i := bytes.IndexByte(*b, '\n')
	if i < 0 {
		l := *b
		*b = nil
		return l
	}
	l := (*b)[:i]
	*b = (*b)[i+1:]
	return l
}
