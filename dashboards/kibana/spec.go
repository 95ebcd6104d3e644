package kibana

// The dashboards, panel by panel. Build turns them into Kibana saved objects
// (spanflow.ndjson); docs/dashboards.md describes each panel and its query.
// Every field used here must be in internal/flow's field table with an
// aggregatable type: a test checks that against the table and the index
// template.

// Operations a column can have (Lens operation types).
const (
	opDateHistogram = "date_histogram"
	opTerms         = "terms"
	opFilters       = "filters"
	opCount         = "count"
	opSum           = "sum"
	opMax           = "max"
	opAverage       = "average"
	opUniqueCount   = "unique_count"
	opPercentile    = "percentile"
	opFormula       = "formula"
)

// Column is one Lens column: a bucket (date histogram, top values, filters)
// or a metric.
type Column struct {
	ID    string
	Op    string
	Field string // source field; for a formula the field summed
	Label string
	// Top values: how many, ranked by which metric column (a column id),
	// or by a metric that is not a column ("sum(field)", "count()": Lens's
	// custom ranking, used where the shown metric is a formula), and further
	// fields for multi-field top values.
	Size      int
	OrderBy   string
	Secondary []string
	// Filters buckets: label -> KQL.
	Filters []Filter
	// Percentile rank (percentile operation).
	Percentile int
	// Multiplier makes a formula column "sum(Field) * Multiplier".
	Multiplier int
	// TimeScale normalises a metric by a time unit ("s": per second).
	TimeScale string
	Format    string // bits, bytes, number; empty: default
}

// Filter is one bucket of a filters column.
type Filter struct {
	Label string
	KQL   string
}

// Panel is one Lens visualization on a dashboard.
type Panel struct {
	Slug  string // makes the saved object id: spanflow-<dashboard>-<slug>
	Title string
	// Description says what the panel shows; docs/dashboards.md repeats it.
	Description string
	Vis         string // lnsXY, lnsDatatable, lnsPie, lnsMetric, lnsHeatmap
	SeriesType  string // lnsXY: line, bar_stacked, area_stacked
	// KQL restricts the panel's documents.
	KQL     string
	Columns []Column // in Lens's columnOrder: outer buckets first
	// Roles of columns in the visualization. XY: X, Split, Y. Heatmap: X, Y,
	// Value (Y as the y-axis bucket). Pie: Groups, Metrics. Metric: Metrics.
	X, Split, Value string
	Y               []string
	Groups          []string
	Metrics         []string
	W, H            int // grid size; 0 = 24 x 15
}

// Dashboard is one Kibana dashboard.
type Dashboard struct {
	Slug        string // saved object id: spanflow-<slug>
	Title       string
	Description string
	Panels      []Panel
}

// DataViewID is the id of the spanflow-flows-* data view.
const DataViewID = "spanflow-flows"

// DataViewTitle is the index pattern of the data view.
const DataViewTitle = "spanflow-flows-*"

const (
	kqlEastWest   = `flow.direction : "east-west"`
	kqlNorthSouth = `flow.direction : "north-south"`
	kqlTCP        = `network.transport : "tcp"`
	// kqlFlows keeps flow documents only: panels that count documents must
	// not count the collector's metric documents (sFlow interface counters,
	// exporter statistics).
	kqlFlows = `event.kind : "event"`
	// kqlExporterStats keeps the collector's exporter statistics documents.
	kqlExporterStats = `event.action : "exporter_stats"`
)

func timeCol() Column {
	return Column{ID: "time", Op: opDateHistogram, Field: "@timestamp", Label: "@timestamp"}
}

func bitsPerSecond(id string) Column {
	return Column{ID: id, Op: opFormula, Field: "network.bytes", Multiplier: 8, TimeScale: "s", Label: "bits/s", Format: "bits"}
}

func bytesCol(id string) Column {
	return Column{ID: id, Op: opSum, Field: "network.bytes", Label: "Bytes", Format: "bytes"}
}

func packetsCol(id string) Column {
	return Column{ID: id, Op: opSum, Field: "network.packets", Label: "Packets", Format: "number"}
}

func flowsCol(id string) Column { return Column{ID: id, Op: opCount, Label: "Flows", Format: "number"} }

func top(id, field, label string, size int, orderBy string, secondary ...string) Column {
	return Column{ID: id, Op: opTerms, Field: field, Label: label, Size: size, OrderBy: orderBy, Secondary: secondary}
}

// table is a datatable of a top-values column followed by metrics.
func table(slug, title, desc, kql string, bucket Column, metrics ...Column) Panel {
	return Panel{Slug: slug, Title: title, Description: desc, Vis: "lnsDatatable", KQL: kql,
		Columns: append([]Column{bucket}, metrics...)}
}

// donut shares a metric among the values of a field.
func donut(slug, title, desc, kql string, bucket, metric Column) Panel {
	return Panel{Slug: slug, Title: title, Description: desc, Vis: "lnsPie", KQL: kql,
		Columns: []Column{bucket, metric}, Groups: []string{bucket.ID}, Metrics: []string{metric.ID}, W: 16}
}

// overTime draws metrics over time, optionally split by a bucket column.
func overTime(slug, title, desc, kql, series string, split *Column, metrics ...Column) Panel {
	p := Panel{Slug: slug, Title: title, Description: desc, Vis: "lnsXY", SeriesType: series, KQL: kql, X: "time"}
	if split != nil {
		p.Columns = append(p.Columns, *split)
		p.Split = split.ID
	}
	p.Columns = append(p.Columns, timeCol())
	for _, m := range metrics {
		p.Columns = append(p.Columns, m)
		p.Y = append(p.Y, m.ID)
	}
	return p
}

func tcpHealthTable(slug, title, desc string, bucket Column) Panel {
	return table(slug, title, desc, kqlTCP, bucket,
		Column{ID: "retrans", Op: opSum, Field: "spanflow.tcp.retransmissions", Label: "Retransmissions", Format: "number"},
		Column{ID: "zerowin", Op: opSum, Field: "spanflow.tcp.zero_windows", Label: "Zero windows", Format: "number"},
		Column{ID: "rttsrv95", Op: opPercentile, Field: "spanflow.tcp.rtt_server_us", Percentile: 95, Label: "Server RTT p95 (µs)"},
		Column{ID: "rttcli95", Op: opPercentile, Field: "spanflow.tcp.rtt_client_us", Percentile: 95, Label: "Client RTT p95 (µs)"},
		flowsCol("flows"))
}

// Dashboards returns every dashboard spanflow installs.
func Dashboards() []Dashboard {
	split := func(c Column) *Column { return &c }
	return []Dashboard{
		{
			Slug: "overview", Title: "spanflow: Overview",
			Description: "All flows: traffic over time, top talkers, services, protocols, IPv4/IPv6 and east-west/north-south shares.",
			Panels: []Panel{
				overTime("bits", "Traffic (bits/s)", "Bits per second of all flows: sum of network.bytes times 8, per second of each time bucket.", "", "area_stacked", nil, bitsPerSecond("bps")),
				overTime("packets", "Packets/s", "Packets per second: sum of network.packets per second of each time bucket.", "", "line", nil,
					Column{ID: "pps", Op: opSum, Field: "network.packets", TimeScale: "s", Label: "packets/s", Format: "number"}),
				overTime("flows", "Flows/s", "Flow records per second: count of flow documents (event.kind event) per second of each time bucket.", kqlFlows, "line", nil,
					Column{ID: "fps", Op: opCount, TimeScale: "s", Label: "flows/s", Format: "number"}),
				table("top-sources", "Top sources", "The 10 source addresses with the most bytes.", "",
					top("ip", "source.ip", "Source", 10, "bytes"), bytesCol("bytes"), packetsCol("packets"), flowsCol("flows")),
				table("top-destinations", "Top destinations", "The 10 destination addresses with the most bytes.", "",
					top("ip", "destination.ip", "Destination", 10, "bytes"), bytesCol("bytes"), packetsCol("packets"), flowsCol("flows")),
				table("top-services", "Top services", "The 10 services (transport and destination port) with the most bytes.", "",
					top("service", "network.transport", "Transport / port", 10, "bytes", "destination.port"), bytesCol("bytes"), flowsCol("flows")),
				donut("protocols", "Protocols", "Share of bytes per transport protocol (network.transport).", "",
					top("proto", "network.transport", "Transport", 10, "bytes"), bytesCol("bytes")),
				donut("ip-version", "IPv4 / IPv6", "Share of bytes per IP version (network.type).", "",
					top("type", "network.type", "IP version", 2, "bytes"), bytesCol("bytes")),
				donut("direction", "East-west / north-south", "Share of bytes per flow.direction (east-west, north-south, multicast, link-local, unknown).", "",
					top("dir", "flow.direction", "Direction", 5, "bytes"), bytesCol("bytes")),
			},
		},
		{
			Slug: "east-west", Title: "spanflow: East-West",
			Description: "Traffic that stays inside the data center (flow.direction east-west): VM conversations, project matrix, hosts and clusters.",
			Panels: []Panel{
				table("vm-conversations", "VM-to-VM conversations", "The 20 source VM / destination VM pairs with the most bytes.", kqlEastWest,
					top("pair", "source.vsphere.vm.name", "Source VM / destination VM", 20, "bytes", "destination.vsphere.vm.name"),
					bytesCol("bytes"), packetsCol("packets"), flowsCol("flows")),
				{Slug: "project-matrix", Title: "Traffic between projects", Vis: "lnsHeatmap", KQL: kqlEastWest,
					Description: "Bytes from each source project (x) to each destination project (y), 10 projects each way.",
					Columns: []Column{
						top("src", "source.vsphere.project", "Source project", 10, "bytes"),
						top("dst", "destination.vsphere.project", "Destination project", 10, "bytes"),
						bytesCol("bytes"),
					}, X: "src", Y: []string{"dst"}, Value: "bytes"},
				table("top-source-vms", "Top VMs sending", "The 10 VMs that sent the most bytes east-west.", kqlEastWest,
					top("vm", "source.vsphere.vm.name", "VM", 10, "bytes"), bytesCol("bytes"), flowsCol("flows")),
				table("top-destination-vms", "Top VMs receiving", "The 10 VMs that received the most bytes east-west.", kqlEastWest,
					top("vm", "destination.vsphere.vm.name", "VM", 10, "bytes"), bytesCol("bytes"), flowsCol("flows")),
				overTime("per-host", "Traffic per source host (bits/s)", "Bits per second sent by the VMs of each ESXi host, top 10 hosts.", kqlEastWest, "bar_stacked",
					split(top("host", "source.vsphere.host.name", "Host", 10, "sum(network.bytes)")), bitsPerSecond("bps")),
				overTime("per-cluster", "Traffic per source cluster (bits/s)", "Bits per second sent by the VMs of each vSphere cluster, top 10 clusters.", kqlEastWest, "bar_stacked",
					split(top("cluster", "source.vsphere.cluster.name", "Cluster", 10, "sum(network.bytes)")), bitsPerSecond("bps")),
			},
		},
		{
			Slug: "north-south", Title: "spanflow: North-South",
			Description: "Traffic that crosses the data center's edge (flow.direction north-south): external peers, by direction.",
			Panels: []Panel{
				overTime("by-direction", "North-south traffic by direction (bits/s)",
					"Bits per second inbound (the destination is a VM known to vCenter) and outbound (the source is).", kqlNorthSouth, "area_stacked",
					split(Column{ID: "way", Op: opFilters, Label: "Direction", Filters: []Filter{
						{Label: "inbound", KQL: "destination.vsphere.vm.name : *"},
						{Label: "outbound", KQL: "source.vsphere.vm.name : *"},
					}}), bitsPerSecond("bps")),
				table("inbound-peers", "Top external peers, inbound", "The 10 external source addresses sending the most bytes to VMs.",
					kqlNorthSouth+" and destination.vsphere.vm.name : *",
					top("ip", "source.ip", "External source", 10, "bytes"), bytesCol("bytes"), flowsCol("flows")),
				table("outbound-peers", "Top external peers, outbound", "The 10 external destination addresses VMs send the most bytes to.",
					kqlNorthSouth+" and source.vsphere.vm.name : *",
					top("ip", "destination.ip", "External destination", 10, "bytes"), bytesCol("bytes"), flowsCol("flows")),
				table("services", "North-south services", "The 10 services (transport and destination port) with the most north-south bytes.", kqlNorthSouth,
					top("service", "network.transport", "Transport / port", 10, "bytes", "destination.port"), bytesCol("bytes"), flowsCol("flows")),
			},
		},
		{
			Slug: "line-load", Title: "spanflow: Line load and Top IP",
			Description: "Per line (exporter address and interface): utilisation over time, the busiest lines, their top IPs and conversations. Filter on a line (observer.ip and an interface id) to see its top IPs.",
			Panels: []Panel{
				overTime("ingress", "Line load in (bits/s)", "Bits per second per line entering on it (observer.ip and observer.ingress.interface.id), top 10 lines.", "", "line",
					split(top("line", "observer.ip", "Exporter / ingress interface", 10, "sum(network.bytes)", "observer.ingress.interface.id")), bitsPerSecond("bps")),
				overTime("egress", "Line load out (bits/s)", "Bits per second per line leaving on it (observer.ip and observer.egress.interface.id), top 10 lines.", "", "line",
					split(top("line", "observer.ip", "Exporter / egress interface", 10, "sum(network.bytes)", "observer.egress.interface.id")), bitsPerSecond("bps")),
				table("lines-in", "Busiest lines in", "The 20 exporter / ingress interface pairs with the most bytes.", "",
					top("line", "observer.ip", "Exporter / ingress interface", 20, "bytes", "observer.ingress.interface.id"), bytesCol("bytes"), packetsCol("packets"), flowsCol("flows")),
				table("lines-out", "Busiest lines out", "The 20 exporter / egress interface pairs with the most bytes.", "",
					top("line", "observer.ip", "Exporter / egress interface", 20, "bytes", "observer.egress.interface.id"), bytesCol("bytes"), packetsCol("packets"), flowsCol("flows")),
				table("top-source-ips", "Top source IPs", "The 5 source addresses with the most bytes (of the line filtered on).", "",
					top("ip", "source.ip", "Source", 5, "bytes"), bytesCol("bytes"), packetsCol("packets")),
				table("top-destination-ips", "Top destination IPs", "The 5 destination addresses with the most bytes (of the line filtered on).", "",
					top("ip", "destination.ip", "Destination", 5, "bytes"), bytesCol("bytes"), packetsCol("packets")),
				table("conversations", "Top conversations", "The 10 source / destination address pairs with the most bytes.", "",
					top("pair", "source.ip", "Source / destination", 10, "bytes", "destination.ip"), bytesCol("bytes"), packetsCol("packets"), flowsCol("flows")),
			},
		},
		{
			Slug: "tcp-health", Title: "spanflow: TCP health",
			Description: "TCP flows measured by the spanflow exporter: handshake RTT percentiles, retransmissions and zero windows by service, VM and project.",
			Panels: []Panel{
				overTime("rtt", "Handshake RTT percentiles (µs)", "Median and 95th percentile of the server-side (SYN to SYN-ACK) and client-side (SYN-ACK to ACK) handshake RTT.", kqlTCP, "line", nil,
					Column{ID: "srv50", Op: opPercentile, Field: "spanflow.tcp.rtt_server_us", Percentile: 50, Label: "server p50"},
					Column{ID: "srv95", Op: opPercentile, Field: "spanflow.tcp.rtt_server_us", Percentile: 95, Label: "server p95"},
					Column{ID: "cli50", Op: opPercentile, Field: "spanflow.tcp.rtt_client_us", Percentile: 50, Label: "client p50"},
					Column{ID: "cli95", Op: opPercentile, Field: "spanflow.tcp.rtt_client_us", Percentile: 95, Label: "client p95"}),
				overTime("events", "Retransmissions and zero windows", "Retransmitted segments and zero-window advertisements per time bucket.", kqlTCP, "bar_stacked", nil,
					Column{ID: "retrans", Op: opSum, Field: "spanflow.tcp.retransmissions", Label: "Retransmissions", Format: "number"},
					Column{ID: "zerowin", Op: opSum, Field: "spanflow.tcp.zero_windows", Label: "Zero windows", Format: "number"}),
				tcpHealthTable("by-service", "By service", "The 10 destination ports with the most retransmissions, with zero windows and RTT p95.",
					top("port", "destination.port", "Service port", 10, "retrans")),
				tcpHealthTable("by-vm", "By server VM", "The 10 destination VMs with the most retransmissions, with zero windows and RTT p95.",
					top("vm", "destination.vsphere.vm.name", "Server VM", 10, "retrans")),
				tcpHealthTable("by-project", "By project", "The 10 destination projects with the most retransmissions, with zero windows and RTT p95.",
					top("project", "destination.vsphere.project", "Project", 10, "retrans")),
			},
		},
		{
			Slug: "exporters", Title: "spanflow: Exporters",
			Description: "Who sends flows: records per second per exporter, protocols, observation domains, last record received; sequence losses and templates from the collector's exporter statistics.",
			Panels: []Panel{
				overTime("records", "Records/s per exporter", "Flow records per second from each exporter (observer.ip), top 10.", kqlFlows, "line",
					split(top("exporter", "observer.ip", "Exporter", 10, "count()")),
					Column{ID: "rps", Op: opCount, TimeScale: "s", Label: "records/s", Format: "number"}),
				table("exporters", "Exporters", "Every exporter (up to 50): records, observation domains, last record received.", kqlFlows,
					top("exporter", "observer.ip", "Exporter", 50, "records"),
					Column{ID: "records", Op: opCount, Label: "Records", Format: "number"},
					Column{ID: "domains", Op: opUniqueCount, Field: "netflow.observation_domain_id", Label: "Observation domains"},
					Column{ID: "last", Op: opMax, Field: "event.created", Label: "Last record received"}),
				donut("protocols", "Records by protocol", "Share of records per protocol they arrived in (flow.protocol).", kqlFlows,
					top("proto", "flow.protocol", "Protocol", 5, "records"), Column{ID: "records", Op: opCount, Label: "Records"}),
				table("domains", "Records per observation domain", "Records per exporter and observation domain (IPFIX domain, NetFlow v9 source id, sFlow sub-agent).", kqlFlows,
					top("domain", "observer.ip", "Exporter / observation domain", 50, "records", "netflow.observation_domain_id"),
					Column{ID: "records", Op: opCount, Label: "Records", Format: "number"}),
				overTime("sequence-losses", "Sequence losses per exporter over time",
					"Records (NetFlow v5, IPFIX) or datagrams (NetFlow v9, sFlow) missing by sequence number, per exporter (observer.ip), top 10: sum of spanflow.exporter.sequence_losses of the collector's exporter statistics.",
					kqlExporterStats, "bar_stacked",
					split(top("exporter", "observer.ip", "Exporter", 10, "sum(spanflow.exporter.sequence_losses)")),
					Column{ID: "losses", Op: opSum, Field: "spanflow.exporter.sequence_losses", Label: "Sequence losses", Format: "number"}),
				table("templates", "Templates per exporter",
					"NetFlow v9/IPFIX templates the collector knows per exporter and observation domain (up to 50): the most over the time range (max of spanflow.exporter.templates).",
					kqlExporterStats,
					top("domain", "observer.ip", "Exporter / observation domain", 50, "templates", "netflow.observation_domain_id"),
					Column{ID: "templates", Op: opMax, Field: "spanflow.exporter.templates", Label: "Templates", Format: "number"}),
			},
		},
	}
}
