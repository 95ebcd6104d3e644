package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spanflow/spanflow/internal/numfmt"
)

// The summary is computed from the NDJSON file the collector wrote, the
// way anyone would read it: what the demo prints is what is in the file.

// Totals are counters of a set of flows.
type Totals struct {
	Flows, Packets, Bytes uint64
}

func (t *Totals) add(d *document) {
	t.Flows++
	t.Packets += d.Network.Packets
	t.Bytes += d.Network.Bytes
}

// Party is one end of a conversation: a VM (with its project) or an address.
type Party struct {
	Name    string // VM name, or the address when no VM holds it
	Project string
	VM      bool
}

func (p Party) String() string {
	if p.Project != "" {
		return p.Name + " [" + p.Project + "]"
	}
	return p.Name
}

// Conversation is the traffic between two parties, both directions.
type Conversation struct {
	A, B Party // A sorts first: VMs before addresses, then by name
	Totals
}

// Line is an exporter interface: the ingress interface the flows were
// metered on (here, an ESXi host's mirrored uplink).
type Line struct {
	Exporter string
	ID       string
	Name     string
	Totals
}

// ProjectTCP is the TCP health of one project: the TCP flows with a VM of
// the project on either end.
type ProjectTCP struct {
	Project         string
	Flows           uint64 // TCP flows
	Packets         uint64 // their packets
	RTTFlows        uint64 // flows with a measured handshake
	RTTSum          time.Duration
	Retransmissions uint64
}

// AvgRTT is the mean handshake RTT (client side plus server side) of the
// flows that measured one.
func (p ProjectTCP) AvgRTT() time.Duration {
	if p.RTTFlows == 0 {
		return 0
	}
	return p.RTTSum / time.Duration(p.RTTFlows)
}

// Summary is what the demo prints.
type Summary struct {
	Total        Totals
	WithVM       uint64            // flows with a VM on at least one end
	Directions   map[string]Totals // by flow.direction
	Conversation []Conversation    // every conversation with a VM, most bytes first
	Lines        []Line            // most bytes first
	Projects     []ProjectTCP      // by project name
	Domains      map[uint64]bool   // observation domains seen
	Other        uint64            // documents of other observation domains, not counted
}

type vsphereDoc struct {
	VM struct {
		Name string `json:"name"`
	} `json:"vm"`
	Host struct {
		Name string `json:"name"`
	} `json:"host"`
	Cluster struct {
		Name string `json:"name"`
	} `json:"cluster"`
	Network struct {
		Name string `json:"name"`
	} `json:"network"`
	Project string `json:"project"`
}

type endDoc struct {
	IP      string      `json:"ip"`
	Port    uint16      `json:"port"`
	VSphere *vsphereDoc `json:"vsphere"`
}

// document is the part of a flow document the summary reads.
type document struct {
	Event struct {
		Kind string `json:"kind"`
	} `json:"event"`
	Source      endDoc `json:"source"`
	Destination endDoc `json:"destination"`
	Network     struct {
		Bytes     uint64 `json:"bytes"`
		Packets   uint64 `json:"packets"`
		Transport string `json:"transport"`
		VLAN      struct {
			ID string `json:"id"`
		} `json:"vlan"`
	} `json:"network"`
	Observer struct {
		IP      string `json:"ip"`
		Ingress struct {
			Interface struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"interface"`
		} `json:"ingress"`
	} `json:"observer"`
	Flow struct {
		Direction string `json:"direction"`
		Locality  string `json:"locality"`
	} `json:"flow"`
	Spanflow struct {
		TCP struct {
			Retransmissions uint64 `json:"retransmissions"`
			RTTClientUs     uint64 `json:"rtt_client_us"`
			RTTServerUs     uint64 `json:"rtt_server_us"`
		} `json:"tcp"`
	} `json:"spanflow"`
	Netflow struct {
		ObservationDomainID uint64 `json:"observation_domain_id"`
	} `json:"netflow"`
}

func partyOf(e *endDoc) Party {
	if e.VSphere != nil && e.VSphere.VM.Name != "" {
		return Party{Name: e.VSphere.VM.Name, Project: e.VSphere.Project, VM: true}
	}
	if a, err := netip.ParseAddr(e.IP); err == nil {
		return Party{Name: a.String()}
	}
	return Party{Name: e.IP}
}

func partyLess(a, b Party) bool {
	if a.VM != b.VM {
		return a.VM
	}
	return a.Name < b.Name
}

// Summarize reads an NDJSON file of flow documents. When domain is not 0,
// only the documents of that IPFIX observation domain (one demo run) are
// counted: the others (earlier runs appended to the same file) are only
// counted in Other.
func Summarize(path string, domain uint64) (*Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the collector's output: %w", err)
	}
	defer f.Close()
	return summarize(f, path, domain)
}

func summarize(r io.Reader, name string, domain uint64) (*Summary, error) {
	s := &Summary{Directions: map[string]Totals{}, Domains: map[uint64]bool{}}
	convs := map[[2]Party]*Conversation{}
	lines := map[[2]string]*Line{}
	projects := map[string]*ProjectTCP{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var d document
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", name, n, err)
		}
		if d.Event.Kind != "event" {
			continue // the collector's exporter statistics: not flows
		}
		if domain != 0 && d.Netflow.ObservationDomainID != domain {
			s.Other++
			continue
		}
		s.Total.add(&d)
		s.Domains[d.Netflow.ObservationDomainID] = true
		dir := s.Directions[d.Flow.Direction]
		dir.add(&d)
		s.Directions[d.Flow.Direction] = dir

		a, b := partyOf(&d.Source), partyOf(&d.Destination)
		if a.VM || b.VM {
			s.WithVM++
			if partyLess(b, a) {
				a, b = b, a
			}
			c := convs[[2]Party{a, b}]
			if c == nil {
				c = &Conversation{A: a, B: b}
				convs[[2]Party{a, b}] = c
			}
			c.add(&d)
		}

		if id := d.Observer.Ingress.Interface.ID; id != "" {
			k := [2]string{d.Observer.IP, id}
			l := lines[k]
			if l == nil {
				l = &Line{Exporter: d.Observer.IP, ID: id}
				lines[k] = l
			}
			if d.Observer.Ingress.Interface.Name != "" {
				l.Name = d.Observer.Ingress.Interface.Name
			}
			l.add(&d)
		}

		if d.Network.Transport == "tcp" {
			seen := map[string]bool{}
			for _, e := range []*endDoc{&d.Source, &d.Destination} {
				if e.VSphere == nil || e.VSphere.Project == "" || seen[e.VSphere.Project] {
					continue
				}
				seen[e.VSphere.Project] = true
				p := projects[e.VSphere.Project]
				if p == nil {
					p = &ProjectTCP{Project: e.VSphere.Project}
					projects[e.VSphere.Project] = p
				}
				p.Flows++
				p.Packets += d.Network.Packets
				p.Retransmissions += d.Spanflow.TCP.Retransmissions
				if rtt := d.Spanflow.TCP.RTTClientUs + d.Spanflow.TCP.RTTServerUs; rtt > 0 {
					p.RTTFlows++
					p.RTTSum += time.Duration(rtt) * time.Microsecond
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	finish(s, convs, lines, projects)
	return s, nil
}

// finish moves the tallies into s in the order the summary prints them:
// conversations and lines by bytes, projects by name.
func finish[K comparable](s *Summary, convs map[[2]Party]*Conversation, lines map[K]*Line, projects map[string]*ProjectTCP) {
	for _, c := range convs {
		s.Conversation = append(s.Conversation, *c)
	}
	sort.Slice(s.Conversation, func(i, j int) bool {
		a, b := s.Conversation[i], s.Conversation[j]
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		if a.A != b.A {
			return partyLess(a.A, b.A)
		}
		return partyLess(a.B, b.B)
	})
	for _, l := range lines {
		s.Lines = append(s.Lines, *l)
	}
	sort.Slice(s.Lines, func(i, j int) bool {
		a, b := s.Lines[i], s.Lines[j]
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		return a.Exporter+"/"+a.ID < b.Exporter+"/"+b.ID
	})
	for _, p := range projects {
		s.Projects = append(s.Projects, *p)
	}
	sort.Slice(s.Projects, func(i, j int) bool { return s.Projects[i].Project < s.Projects[j].Project })
}

// Share is the part of the bytes that went in a direction, in percent.
func (s *Summary) Share(direction string) float64 {
	if s.Total.Bytes == 0 {
		return 0
	}
	return 100 * float64(s.Directions[direction].Bytes) / float64(s.Total.Bytes)
}

// Top rows printed per table.
const topRows = 10

// Print writes the summary tables.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "Top VM conversations (both directions; [project] from vCenter)\n")
	rows := [][]string{{"bytes", "packets", "flows", "between"}}
	for i, c := range s.Conversation {
		if i == topRows {
			break
		}
		rows = append(rows, []string{Group(c.Bytes), Group(c.Packets), Group(c.Flows), c.A.String() + " ↔ " + c.B.String()})
	}
	table(w, rows, 3)

	fmt.Fprintf(w, "\nEast-west / north-south\n")
	rows = [][]string{{"direction", "share of bytes", "bytes", "packets", "flows"}}
	for _, d := range []string{"east-west", "north-south", "unknown"} {
		if t, ok := s.Directions[d]; ok {
			rows = append(rows, []string{d, Percent(s.Share(d)), Group(t.Bytes), Group(t.Packets), Group(t.Flows)})
		}
	}
	table(w, rows, 0)

	fmt.Fprintf(w, "\nTop lines (exporter interfaces: each ESXi host's mirrored uplink)\n")
	rows = [][]string{{"bytes", "packets", "flows", "line"}}
	for i, l := range s.Lines {
		if i == topRows {
			break
		}
		rows = append(rows, []string{Group(l.Bytes), Group(l.Packets), Group(l.Flows), l.Label()})
	}
	table(w, rows, 3)

	fmt.Fprintf(w, "\nTCP by project (flows with a VM of the project on either end)\n")
	rows = [][]string{{"project", "TCP flows", "handshake RTT (avg)", "retransmissions", "of TCP packets"}}
	for _, p := range s.Projects {
		rows = append(rows, []string{p.Project, Group(p.Flows), Millis(p.AvgRTT()), Group(p.Retransmissions), Percent(p.RetransmissionRate())})
	}
	table(w, rows, 0)
}

// RetransmissionRate is the share of the TCP packets that were
// retransmissions, in percent.
func (p ProjectTCP) RetransmissionRate() float64 {
	if p.Packets == 0 {
		return 0
	}
	return 100 * float64(p.Retransmissions) / float64(p.Packets)
}

// table writes rows (the first is the header) indented by two spaces,
// column text left-aligned and the others right-aligned.
func table(w io.Writer, rows [][]string, text int) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			b.WriteString("  ")
			if i == text {
				b.WriteString(c)
				if i < len(r)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// Label names a line: exporter, interface id and name.
func (l Line) Label() string {
	s := l.Exporter + " if " + l.ID
	if l.Name != "" {
		s += " (" + l.Name + ")"
	}
	return s
}

// Group, Percent and Millis are numfmt's, shared with the other summaries.
var (
	Group   = numfmt.Group
	Percent = numfmt.Percent
	Millis  = numfmt.Millis
)
