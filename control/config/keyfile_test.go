package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// A private key that group or others can read is refused, as ssh refuses
// such identity files, naming the file, the key and the mode.
func TestPrivateKeyPermissions(t *testing.T) {
	text := acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n")
	if _, err := Parse("a.toml", []byte(text)); err != nil {
		t.Fatalf("0600 key refused: %v", err)
	}
	keyFile := regexp.MustCompile(`key = "([^"]+)"`).FindStringSubmatch(text)[1]
	for _, mode := range []os.FileMode{0o640, 0o604, 0o666} {
		if err := os.Chmod(keyFile, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Parse("a.toml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), "acs.key") || !strings.Contains(err.Error(), "accessible by group or others") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if err := os.Chmod(keyFile, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("a.toml", []byte(text)); err != nil {
		t.Fatalf("0400 key refused: %v", err)
	}
}
