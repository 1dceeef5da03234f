package objstoretest

import (
	"strings"
	"testing"
)

// Setenv sets each KEY=VALUE of env (as Env, GCSEnv and AzureEnv return
// them) in the test process's environment for the duration of t.
func Setenv(t testing.TB, env []string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}
