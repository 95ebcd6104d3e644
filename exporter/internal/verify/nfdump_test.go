package verify

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// TestOwnsUDPPort: the check StartNfcapd waits on tells the process holding
// a port from any other process, so a port another test took in the meantime
// is not mistaken for nfcapd listening.
func TestOwnsUDPPort(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	if !ownsUDPPort(os.Getpid(), port) {
		t.Errorf("this process holds port %d but ownsUDPPort says no", port)
	}
	other := exec.Command("sleep", "5")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	if ownsUDPPort(other.Process.Pid, port) {
		t.Errorf("sleep (pid %d) does not hold port %d but ownsUDPPort says it does", other.Process.Pid, port)
	}
}
