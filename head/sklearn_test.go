package head

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testasset"
)

const sklearnScript = `
import sys, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
d, n, m, D = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
X = np.fromfile(d + "/X.f32", dtype="<f4").reshape(n + m, D)
y = np.fromfile(d + "/y.i32", dtype="<i4")
sc = StandardScaler().fit(X[:n])
clf = LogisticRegression(max_iter=1000).fit(sc.transform(X[:n]), y[:n])
print(" ".join(str(int(v)) for v in clf.predict(sc.transform(X[n:]))))
`

// TestAgreesWithScikitLearn trains the default linear head and scikit-learn's
// LogisticRegression (lbfgs, C=1, standardised) on the same rows and compares
// test predictions.
func TestAgreesWithScikitLearn(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import sklearn, numpy").Run(); err != nil {
		testasset.Skip(t, "scikit-learn reference unavailable (%s -c 'import sklearn, numpy': %v)", py, err)
	}
	for _, tc := range []struct {
		name         string
		n, m, d, k   int
		sep          float64
		minAgreement float64
	}{
		{"easy", 1500, 500, 20, 4, 0.6, 0.99},
		{"hard", 2000, 1000, 50, 6, 0.15, 0.99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := mixture(tc.n+tc.m, tc.d, tc.k, tc.sep, 77)
			dir := t.TempDir()
			xb := make([]byte, 4*len(all.X))
			for i, v := range all.X {
				binary.LittleEndian.PutUint32(xb[4*i:], math.Float32bits(v))
			}
			yb := make([]byte, 4*len(all.Y))
			for i, v := range all.Y {
				binary.LittleEndian.PutUint32(yb[4*i:], uint32(v))
			}
			os.WriteFile(filepath.Join(dir, "X.f32"), xb, 0o644)
			os.WriteFile(filepath.Join(dir, "y.i32"), yb, 0o644)
			out, err := exec.Command(py, "-c", sklearnScript, dir, strconv.Itoa(tc.n), strconv.Itoa(tc.m), strconv.Itoa(tc.d)).Output()
			if err != nil {
				t.Fatalf("scikit-learn: %v", err)
			}
			fields := strings.Fields(string(out))
			if len(fields) != tc.m {
				t.Fatalf("scikit-learn printed %d predictions, want %d", len(fields), tc.m)
			}
			idx := make([]int, tc.n)
			for i := range idx {
				idx[i] = i
			}
			m, _, err := Train(context.Background(), all.Subset(idx), Data{}, DefaultConfig(KindLinear), nil)
			if err != nil {
				t.Fatal(err)
			}
			p := make([]float32, tc.k)
			agree, ours, theirs := 0, 0, 0
			for i := 0; i < tc.m; i++ {
				row := tc.n + i
				m.Logits(all.Row(row), p, nil)
				sk, _ := strconv.Atoi(fields[i])
				if argmax(p) == sk {
					agree++
				}
				if argmax(p) == int(all.Y[row]) {
					ours++
				}
				if sk == int(all.Y[row]) {
					theirs++
				}
			}
			ag := float64(agree) / float64(tc.m)
			acc, skAcc := float64(ours)/float64(tc.m), float64(theirs)/float64(tc.m)
			t.Logf("accuracy %.4f (scikit-learn %.4f), prediction agreement %.4f", acc, skAcc, ag)
			// The objective and the gradient stopping rule are
			// scikit-learn's; the line search is not (gonum's backtracking,
			// scipy's L-BFGS-B), so weights differ slightly and a prediction
			// near a boundary may flip. Measured: agreement 1.0 and equal
			// accuracy in both cases; README states these bounds.
			if ag < tc.minAgreement || math.Abs(acc-skAcc) > 0.002 {
				t.Errorf("accuracy %.4f vs scikit-learn %.4f, agreement %.4f (want >= %.2f)", acc, skAcc, ag, tc.minAgreement)
			}
		})
	}
}
