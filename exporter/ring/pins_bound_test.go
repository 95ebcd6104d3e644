package ring

import (
	"errors"
	"strconv"
	"testing"
)

// TestPinsBounded: past maxPins a new name is refused with ErrTooManyPins,
// while a pin of a name held is still replaced, and removing one makes
// room.
func TestPinsBounded(t *testing.T) {
	defer func(n int) { maxPins = n }(maxPins)
	maxPins = 50
	dir := t.TempDir()
	for i := range maxPins {
		if err := AddPin(dir, Pin{From: 1, To: 2, Name: "p" + strconv.Itoa(i)}); err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
	}
	if err := AddPin(dir, Pin{From: 1, To: 2, Name: "one-more"}); !errors.Is(err, ErrTooManyPins) {
		t.Fatalf("pin %d: %v, want ErrTooManyPins", maxPins+1, err)
	}
	if err := AddPin(dir, Pin{From: 5, To: 9, Name: "p7"}); err != nil {
		t.Fatalf("replacing a pin at the bound: %v", err)
	}
	if err := RemovePin(dir, "p3"); err != nil {
		t.Fatal(err)
	}
	if err := AddPin(dir, Pin{From: 1, To: 2, Name: "one-more"}); err != nil {
		t.Fatalf("after a removal: %v", err)
	}
	pins, err := Pins(dir)
	if err != nil || len(pins) != maxPins {
		t.Fatalf("%d pins (%v), want %d", len(pins), err, maxPins)
	}
}
