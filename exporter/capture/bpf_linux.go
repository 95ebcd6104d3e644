//go:build linux && cgo

package capture

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// libpcap's types, declared here so that building needs no libpcap headers:
// the library is loaded at run time, and only when a filter is given.
struct sf_bpf_insn { unsigned short code; unsigned char jt; unsigned char jf; unsigned int k; };
struct sf_bpf_program { unsigned int bf_len; struct sf_bpf_insn *bf_insns; };

typedef void *(*open_dead_fn)(int, int);
typedef int (*compile_fn)(void *, struct sf_bpf_program *, const char *, int, unsigned int);
typedef char *(*geterr_fn)(void *);
typedef void (*freecode_fn)(struct sf_bpf_program *);
typedef void (*close_fn)(void *);

static void *sf_lib;

static const char *sf_load(void) {
	const char *names[] = {"libpcap.so.0.8", "libpcap.so.1", "libpcap.so", NULL};
	if (sf_lib) return NULL;
	for (int i = 0; names[i]; i++) {
		sf_lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		if (sf_lib) return NULL;
	}
	return dlerror();
}

// sf_compile compiles expr for frames of the DLT dlt. It returns 0 and fills prog
// and handle (to free with sf_free), or -1 when libpcap lacks a symbol, or 1
// with the compiler's message copied into err.
static int sf_compile(const char *expr, int dlt, struct sf_bpf_program *prog, void **handle, char *err, size_t errlen) {
	open_dead_fn open_dead = (open_dead_fn)dlsym(sf_lib, "pcap_open_dead");
	compile_fn compile = (compile_fn)dlsym(sf_lib, "pcap_compile");
	geterr_fn geterr = (geterr_fn)dlsym(sf_lib, "pcap_geterr");
	close_fn pclose = (close_fn)dlsym(sf_lib, "pcap_close");
	if (!open_dead || !compile || !geterr || !pclose) return -1;
	void *p = open_dead(dlt, 262144);
	if (!p) return -1;
	if (compile(p, prog, expr, 1, 0xffffffff) != 0) {
		strncpy(err, geterr(p), errlen - 1);
		err[errlen - 1] = 0;
		pclose(p);
		return 1;
	}
	*handle = p;
	return 0;
}

static void sf_free(struct sf_bpf_program *prog, void *handle) {
	freecode_fn freecode = (freecode_fn)dlsym(sf_lib, "pcap_freecode");
	close_fn pclose = (close_fn)dlsym(sf_lib, "pcap_close");
	if (freecode) freecode(prog);
	if (pclose && handle) pclose(handle);
}
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
)

var compileMu sync.Mutex // pcap_compile is not reentrant in old libpcap

// CompileFilter compiles a tcpdump filter expression ("not port 22") into
// classic BPF for Ethernet frames, with libpcap's compiler loaded at run time
// (Debian package libpcap0.8, which tcpdump needs too; no headers needed to
// build).
func CompileFilter(expr string) ([]bpf.RawInstruction, error) {
	return compileFilter(expr, linkTypeEthernet)
}

// compileFilter compiles expr for frames of a pcap link type: Ethernet,
// raw IP or Cisco HDLC.
func compileFilter(expr string, link uint32) ([]bpf.RawInstruction, error) {
	dlt := C.int(1) // DLT_EN10MB
	switch link {
	case linkTypeRaw:
		dlt = 12 // DLT_RAW on Linux
	case linkTypeCHDLC:
		dlt = 104 // DLT_C_HDLC
	}
	return compileDLT(expr, dlt)
}

// CompileFilterFor compiles expr for frames of any pcap link type, as a
// capture file or the packet ring stores them (LINKTYPE_ETHERNET,
// LINKTYPE_LINUX_SLL2...): libpcap's DLT is the link type but for raw IP.
func CompileFilterFor(expr string, link uint32) ([]bpf.RawInstruction, error) {
	dlt := C.int(link)
	switch link {
	case linkTypeRaw, 12, 14:
		dlt = 12 // DLT_RAW on Linux
	}
	return compileDLT(expr, dlt)
}

func compileDLT(expr string, dlt C.int) ([]bpf.RawInstruction, error) {
	compileMu.Lock()
	defer compileMu.Unlock()
	if msg := C.sf_load(); msg != nil {
		return nil, fmt.Errorf("filter %q: cannot load libpcap to compile it (install libpcap0.8): %s", expr, C.GoString(msg))
	}
	cexpr := C.CString(expr)
	defer C.free(unsafe.Pointer(cexpr))
	var prog C.struct_sf_bpf_program
	var handle unsafe.Pointer
	var errbuf [512]C.char
	switch C.sf_compile(cexpr, dlt, &prog, &handle, &errbuf[0], C.size_t(len(errbuf))) {
	case -1:
		return nil, fmt.Errorf("filter %q: the libpcap found has no usable compiler", expr)
	case 1:
		return nil, fmt.Errorf("filter %q: %s", expr, C.GoString(&errbuf[0]))
	}
	defer C.sf_free(&prog, handle)
	insns := unsafe.Slice(prog.bf_insns, int(prog.bf_len))
	out := make([]bpf.RawInstruction, len(insns))
	for i, in := range insns {
		out[i] = bpf.RawInstruction{Op: uint16(in.code), Jt: uint8(in.jt), Jf: uint8(in.jf), K: uint32(in.k)}
	}
	return out, nil
}
