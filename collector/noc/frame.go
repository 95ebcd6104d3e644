package noc

import "time"

// Frame is what the page receives every tick (SSE event "frame", and
// GET /api/frame): the rollups' snapshot cut to what a wall screen shows,
// with the view's own sums (Sankey, east-west/north-south, exporters'
// health). Rates are bits per second.
type Frame struct {
	Seq uint64 `json:"seq"`
	// Time is the end of the second the rollups describe (event time);
	// Built is when the frame was made (wall clock), for the latency.
	Time  time.Time `json:"time"`
	Built time.Time `json:"built"`
	// Lines are the charted lines, heaviest first.
	Lines     []Line     `json:"lines"`
	Projects  []Project  `json:"projects"`
	VMs       []Rate     `json:"vms"`
	Services  []Rate     `json:"services"`
	Exporters []Exporter `json:"exporters"`
	// Split is the traffic by direction: east-west, north-south, other.
	Split []Rate `json:"split"`
	// Links are the Sankey's project ↔ project and project ↔ outside
	// links, heaviest first.
	Links  []Link  `json:"links"`
	Alerts []Alert `json:"alerts"`
	// Health is the collector's own counts.
	Health Health `json:"health"`
}

// Line is one line's load this second.
type Line struct {
	Key  string `json:"key"`  // rollup key "EXPORTER INTERFACE"
	Name string `json:"name"` // from the rules file's lines, else the key
	// Bps is bits per second in the second of Frame.Time.
	Bps float64 `json:"bps"`
	// Capacity (bits per second) and Util (Bps/Capacity) when the rules
	// file's lines give the capacity.
	Capacity float64  `json:"capacity,omitempty"`
	Util     *float64 `json:"util,omitempty"`
	Top      []Talker `json:"top"`
	Query    string   `json:"q"` // KQL of its flows, for Kibana Discover
}

// Talker is a source address and its share of a row's traffic; its
// Discover query is its row's and source.ip:ADDR.
type Talker struct {
	Addr string  `json:"addr"`
	Bps  float64 `json:"bps"`
}

// Project is a project's traffic and TCP health.
type Project struct {
	Name string  `json:"name"`
	Bps  float64 `json:"bps"`
	// RTTp95 (milliseconds, handshakes of the last RTT windows) and
	// Retrans (retransmitted over TCP packets, this second) are absent
	// when not measured.
	RTTp95  *float64 `json:"rtt_p95_ms,omitempty"`
	Retrans *float64 `json:"retrans_ratio,omitempty"`
	Top     []Talker `json:"top"`
	Query   string   `json:"q"`
}

// Rate is a named rate; Bytes, where given, is the total since the view
// started.
type Rate struct {
	Name  string  `json:"name"`
	Bps   float64 `json:"bps"`
	Bytes float64 `json:"bytes,omitempty"`
	Query string  `json:"q"`
}

// Exporter is one exporter's traffic and health, from the rollups and
// from the exporter statistics the pipeline writes (every
// exporter-stats-interval): totals since the view started.
type Exporter struct {
	Addr           string    `json:"addr"`
	Bps            float64   `json:"bps"`
	Datagrams      uint64    `json:"datagrams"`
	Records        uint64    `json:"records"`
	SequenceLosses uint64    `json:"sequence_losses"`
	DecodeErrors   uint64    `json:"decode_errors"`
	Templates      uint64    `json:"templates"`
	StatsAt        time.Time `json:"stats_at,omitzero"` // last statistics received
	Query          string    `json:"q"`
}

// Link is a Sankey link: bits per second (smoothed over the rollups'
// smoothing window, by arrival) and bytes since the view started.
type Link struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	Bps   float64 `json:"bps"`
	Bytes float64 `json:"bytes"`
	Query string  `json:"q"`
}

// Alert is a firing alert.
type Alert struct {
	Rule     string    `json:"rule"`
	Severity string    `json:"severity"`
	Scope    string    `json:"scope"`
	Key      string    `json:"key"`
	On       string    `json:"on"` // what it is on, for people: the line's name, else the key
	Value    float64   `json:"value"`
	Summary  string    `json:"summary,omitempty"`
	FiredAt  time.Time `json:"fired_at"`
	Discover string    `json:"discover,omitempty"`
	Query    string    `json:"q"`
}

// Health is the collector's own state.
type Health struct {
	Datagrams   uint64 `json:"datagrams"`    // handled by the pipeline
	KernelDrops uint64 `json:"kernel_drops"` // UDP datagrams the kernel dropped
	Clients     int    `json:"clients"`      // live streams open
	// FramesDropped: frames not sent to slow clients, since start.
	FramesDropped uint64 `json:"frames_dropped"`
	// LinesNotCharted: lines left out of the charts (ui-max-rows).
	LinesNotCharted int `json:"lines_not_charted"`
	// PairsOverflow: records whose project pair found the Sankey full.
	PairsOverflow uint64 `json:"pairs_overflow"`
}

// Hello is the first event of a stream (SSE event "hello"): the settings
// the page needs and the line load history, oldest first, one value a
// tick, ending at End.
type Hello struct {
	Tick     float64              `json:"tick"` // seconds
	End      time.Time            `json:"end"`
	History  map[string][]float64 `json:"history"`
	Points   int                  `json:"points"` // values a full history holds
	Kibana   string               `json:"kibana,omitempty"`
	DataView string               `json:"data_view,omitempty"`
	Rotate   float64              `json:"rotate"` // kiosk: seconds per view
	User     string               `json:"user,omitempty"`
}
