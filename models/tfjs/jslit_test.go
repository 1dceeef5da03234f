package tfjs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testasset"
)

func TestParseJSLiteral(t *testing.T) {
	tests := []struct {
		src  string
		want string // JSON of the expected value
		n    int    // bytes consumed; -1 means all
	}{
		{`{a:1,"b":"x",'c':[!0,!1,null,void 0]}`, `{"a":1,"b":"x","c":[true,false,null,null]}`, -1},
		{`{1:[.5,-.25,1e-3,-2E+2,0x1F]}`, `{"1":[0.5,-0.25,0.001,-200,31]}`, -1},
		{`"a\"b\\c\n\u00e9\x41\u{0}"`, ``, 0}, // \u{...} (ES6) is not supported: error
		{`'it\'s'`, `"it's"`, -1},
		{`"\ud83d\ude00"`, `"😀"`, -1},
		{` [ 1 , 2 ] tail`, `[1,2]`, 10},
		{`{$a_1:{b:[]},_:{}}`, `{"$a_1":{"b":[]},"_":{}}`, -1},
		{`[true,false,null]`, `[true,false,null]`, -1},
		{`{x:1}}`, `{"x":1}`, 5},
	}
	for _, tc := range tests {
		v, n, err := ParseJSLiteral([]byte(tc.src))
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseJSLiteral(%s) = %v, want an error", tc.src, v)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseJSLiteral(%s): %v", tc.src, err)
			continue
		}
		got, _ := json.Marshal(v)
		var a, b any
		json.Unmarshal(got, &a)
		json.Unmarshal([]byte(tc.want), &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("ParseJSLiteral(%s) = %s, want %s", tc.src, got, tc.want)
		}
		want := tc.n
		if want < 0 {
			want = len(tc.src)
		}
		if n != want {
			t.Errorf("ParseJSLiteral(%s) consumed %d bytes, want %d", tc.src, n, want)
		}
	}
	// Minified infinities.
	v, _, err := ParseJSLiteral([]byte(`[1/0,-1/0]`))
	if err != nil {
		t.Fatal(err)
	}
	if a := v.([]any); !math.IsInf(a[0].(float64), 1) || !math.IsInf(a[1].(float64), -1) {
		t.Errorf("1/0, -1/0 = %v", a)
	}
}

func TestParseJSLiteralErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{``, "end of input"},
		{`{a:1`, "unterminated object"},
		{`[1,2`, "unterminated array"},
		{`"abc`, "unterminated string"},
		{`{a 1}`, "expected ':'"},
		{`{a:1 b:2}`, "expected ','"},
		{`[1 2]`, "expected ','"},
		{`foo()`, `identifier "foo"`},
		{`!2`, "!0 and !1"},
		{`"a\`, "unterminated string"},
		{`"\x4"`, `\x escape`},
		{`{a:` + strings.Repeat("[", 1000) + `}`, "nested deeper"},
		{`@`, "unexpected character"},
	}
	for _, tc := range tests {
		_, _, err := ParseJSLiteral([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseJSLiteral(%.30q) error %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestUnwrapJSModule(t *testing.T) {
	wrap := func(body string) string {
		return `!function(e){if("object"==typeof exports&&"undefined"!=typeof module)module.exports=e();else{(window).model=e()}}(function(){return function e(a,n,i){}({1:[function(e,a,n){` + body + `},{}]},{},[1])(1)});`
	}
	tests := []struct {
		name, src string
		want      any
		err       string
	}{
		{"object", wrap(`a.exports={x:[1,2],y:"z"}`), map[string]any{"x": []any{1.0, 2.0}, "y": "z"}, ""},
		{"string", wrap(`a.exports="QUJD"`), "QUJD", ""},
		{"commonjs", `module.exports = {a: !0};`, map[string]any{"a": true}, ""},
		{"computed", wrap(`a.exports={x:1}+f()`), nil, "computes its export"},
		{"none", `var x = 1;`, nil, "no \"module.exports"},
		{"two", `module.exports={};module.exports={};`, nil, "2 \"module.exports\""},
		{"comparison is not assignment", `a.exports=="x";module.exports=[1]`, []any{1.0}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := UnwrapJSModule([]byte(tc.src))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, tc.want) {
				t.Fatalf("got %#v, want %#v", v, tc.want)
			}
		})
	}
}

func TestUnwrapBase64Module(t *testing.T) {
	tests := []struct{ src, want, err string }{
		{`(function(e,h,n){h.exports="QUJD"},{})`, "ABC", ""},
		{`module.exports='QUI='`, "AB", ""},
		{`module.exports="QU\x4aD"`, "ABC", ""}, // escaped: slow path
		{`module.exports="QUJD"+x`, "", "computes its export"},
		{`module.exports={a:1}`, "", "expected a base64 string"},
		{`module.exports="Q!JD"`, "", "bad base64"},
	}
	for _, tc := range tests {
		got, err := unwrapBase64Module([]byte(tc.src))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if tc.want != "" && string(got) != tc.want {
			t.Errorf("%s = %q, want %q", tc.src, got, tc.want)
		}
	}
}

// TestUnwrapMatchesNode compares the pure-Go unwrapping of the real nsfwjs
// model modules with what node computes by evaluating them
// (scripts/tfjs_unwrap.js), when node and the tarball are available.
func TestUnwrapMatchesNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testasset.Skip(t, "node not on PATH")
	}
	tgz := tarballFor(t, ArchMobileNetV2)
	script := "../../scripts/tfjs_unwrap.js"
	files, err := readTarball(tgz, func(rel string) bool {
		return strings.HasPrefix(rel, "dist/models/mobilenet_v2/")
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dist/models/mobilenet_v2/model.min.js", "dist/models/mobilenet_v2/group1-shard1of1.min.js"} {
		src := files.Files[name]
		goV, err := UnwrapJSModule(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cmd := exec.Command(node, script)
		cmd.Stdin = strings.NewReader(string(src))
		out, err := cmd.Output()
		if err != nil {
			testasset.Skip(t, "node %s failed: %v", script, err)
		}
		var nodeV any
		if err := json.Unmarshal(out, &nodeV); err != nil {
			t.Fatalf("node output: %v", err)
		}
		// Compare as JSON values (node has no undefined in JSON).
		gj, _ := json.Marshal(goV)
		var goJ any
		json.Unmarshal(gj, &goJ)
		if !reflect.DeepEqual(goJ, nodeV) {
			t.Errorf("%s: Go unwrapping differs from node's evaluation", name)
		}
		if s, ok := nodeV.(string); ok {
			fast, err := unwrapBase64Module(src)
			want, err2 := base64.StdEncoding.DecodeString(s)
			if err != nil || err2 != nil || !bytes.Equal(fast, want) {
				t.Errorf("%s: direct base64 unwrapping differs from node's string (%v, %v)", name, err, err2)
			}
		}
	}
}

// FuzzParseJSLiteral checks that the parser never panics and that any
// value it accepts survives a JSON round trip through itself.
func FuzzParseJSLiteral(f *testing.F) {
	for _, s := range []string{`{a:1,"b":[!0,!1,null,void 0,.5,-1e3,0x10]}`, `"x\u0041\n"`, `[1/0]`, `{1:{}}`, `'q\'q'`, `[`, `{a:`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		v, n, err := ParseJSLiteral(src)
		if err != nil {
			return
		}
		if n < 0 || n > len(src) {
			t.Fatalf("consumed %d of %d bytes", n, len(src))
		}
		j, err := json.Marshal(v)
		if err != nil {
			return // NaN/Inf have no JSON form
		}
		v2, _, err := ParseJSLiteral(j)
		if err != nil {
			t.Fatalf("JSON %s of an accepted literal does not parse: %v", j, err)
		}
		// Compare as decoded JSON values: encodings may differ in escaping
		// (json.Marshal writes invalid UTF-8 as "\ufffd").
		j2, _ := json.Marshal(v2)
		var a, b any
		json.Unmarshal(j, &a)
		json.Unmarshal(j2, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed %s into %s", j, j2)
		}
	})
}

// FuzzUnwrapJSModule checks that arbitrary bundles never panic.
func FuzzUnwrapJSModule(f *testing.F) {
	f.Add([]byte(`module.exports={a:[1,2]}`))
	f.Add([]byte(`(function(e,h,n){h.exports="AACAPw=="})`))
	f.Add([]byte(`x.exports==1;y.exports=`))
	f.Fuzz(func(t *testing.T, src []byte) {
		UnwrapJSModule(src)
	})
}
