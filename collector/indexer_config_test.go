package collector

import "testing"

// TestIndexerFileOutputRotation: the indexer's file outputs take
// --output-max-bytes and --output-max-files as the collector's do (before,
// an indexer always rotated at the default 256 MiB, keeping 5 files).
func TestIndexerFileOutputRotation(t *testing.T) {
	cfg := DefaultIndexerConfiguration()
	def := DefaultConfiguration()
	if cfg.OutputMaxBytes != def.Outputs.OutputMaxBytes || cfg.OutputMaxFiles != def.Outputs.OutputMaxFiles {
		t.Errorf("indexer defaults %d bytes, %d files; the collector's %d, %d",
			cfg.OutputMaxBytes, cfg.OutputMaxFiles, def.Outputs.OutputMaxBytes, def.Outputs.OutputMaxFiles)
	}
	cfg.Output, cfg.OutputMaxBytes, cfg.OutputMaxFiles = []string{"file:/dev/shm/x.ndjson"}, 0, 2
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := cfg.collector().ndjsonFile("/dev/shm/x.ndjson")
	if n.MaxBytes != 0 || n.MaxFiles != 2 {
		t.Errorf("file output of the indexer: %d bytes, %d files; want 0, 2", n.MaxBytes, n.MaxFiles)
	}
	cfg.OutputMaxBytes = -1
	if cfg.Validate() == nil {
		t.Error("negative output-max-bytes accepted")
	}
}
