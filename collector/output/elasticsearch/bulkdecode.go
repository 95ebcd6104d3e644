package elasticsearch

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"

	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// bulkDecoder reads bulk responses for the bulk indexers. The response is
// filtered to the items' status and error (FilterPath), so that when every
// document went in it is `{"items":[{"create":{"status":201}},...]}`.
// encoding/json decodes each item into a map of a large struct, and that
// was a sixth of the output's CPU (BenchmarkClientCPU), CPU a cluster on
// the same host then lacks. That shape is read here directly, every item
// of one operation and status sharing one map (the indexer only reads
// them); anything else, errors included, goes to encoding/json.
type bulkDecoder struct {
	// answered, when set, is called as soon as the answer is read, before
	// it is decoded and before the indexer calls back for every item: the
	// request no longer occupies the cluster, so its slot can go to the
	// next request (see Output.Start).
	answered func()
}

var bulkBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (d bulkDecoder) UnmarshalFromReader(r io.Reader, blk *esutil.BulkIndexerResponse) error {
	buf := bulkBuffers.Get().(*bytes.Buffer)
	defer bulkBuffers.Put(buf)
	buf.Reset()
	_, err := buf.ReadFrom(r)
	if d.answered != nil {
		d.answered()
	}
	if err != nil {
		return err
	}
	if items, ok := plainItems(buf.Bytes(), blk.Items[:0]); ok {
		*blk = esutil.BulkIndexerResponse{Items: items}
		return nil
	}
	*blk = esutil.BulkIndexerResponse{}
	return json.Unmarshal(buf.Bytes(), blk)
}

// plainItems reads `{"items":[{"OP":{"status":N}},...]}` exactly; false for
// anything else.
func plainItems(b []byte, items []map[string]esutil.BulkIndexerResponseItem) ([]map[string]esutil.BulkIndexerResponseItem, bool) {
	const head = `{"items":[`
	if !bytes.HasPrefix(b, []byte(head)) {
		return nil, false
	}
	b = b[len(head):]
	if bytes.HasPrefix(b, []byte("]}")) && len(b) == 2 {
		return items, true
	}
	for {
		// {"OP":{"status":N}}
		if len(b) < 2 || b[0] != '{' || b[1] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(b[2:], '"')
		if end < 0 {
			return nil, false
		}
		op := b[2 : 2+end]
		for _, c := range op {
			if (c < 'a' || c > 'z') && c != '_' { // index, create, update, delete
				return nil, false
			}
		}
		b = b[2+end+1:]
		const mid = `:{"status":`
		if !bytes.HasPrefix(b, []byte(mid)) {
			return nil, false
		}
		b = b[len(mid):]
		n := 0
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		if n == 0 || n > 3 || (n > 1 && b[0] == '0') || len(b) < n+2 || b[n] != '}' || b[n+1] != '}' {
			return nil, false
		}
		status := 0
		for _, c := range b[:n] {
			status = status*10 + int(c-'0')
		}
		items = append(items, itemOf(op, status))
		b = b[n+2:]
		switch {
		case len(b) > 0 && b[0] == ',':
			b = b[1:]
		case len(b) == 2 && b[0] == ']' && b[1] == '}':
			return items, true
		default:
			return nil, false
		}
	}
}

// The maps of the answers a bulk request of new documents gets, shared by
// every item that has them.
var (
	created    = map[string]esutil.BulkIndexerResponseItem{"create": {Status: 201}}
	indexedNew = map[string]esutil.BulkIndexerResponseItem{"index": {Status: 201}}
	indexedOld = map[string]esutil.BulkIndexerResponseItem{"index": {Status: 200}}
)

// itemOf is the map of an item of operation op with status.
func itemOf(op []byte, status int) map[string]esutil.BulkIndexerResponseItem {
	switch {
	case status == 201 && string(op) == "create":
		return created
	case status == 201 && string(op) == "index":
		return indexedNew
	case status == 200 && string(op) == "index":
		return indexedOld
	}
	return map[string]esutil.BulkIndexerResponseItem{string(op): {Status: status}}
}
