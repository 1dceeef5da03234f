package backbone

import "github.com/headtune/headtune/backbone/onnxpb"

// Bridges for the external test package backbone_test. The tests live
// outside the package because they build their models with
// internal/testmodels, which imports backbone; these names expose the few
// internals they check.

// IndexForTest exposes a graph index's queries.
type IndexForTest struct{ ix *graphIndex }

// NewIndexForTest indexes m and infers its shapes.
func NewIndexForTest(m *onnxpb.ModelProto) IndexForTest { return IndexForTest{newGraphIndex(m)} }

// LiveNodes reports, per node of the graph, whether targets need it.
func (t IndexForTest) LiveNodes(targets []string) []bool { return t.ix.liveNodes(targets) }

// Node returns the node producing tensor name, nil for inputs and constants.
func (t IndexForTest) Node(name string) *onnxpb.NodeProto { return t.ix.node(name) }

// Shape returns the inferred shape of tensor name (-1 for unknown dims), nil
// when unknown.
func (t IndexForTest) Shape(name string) []int64 { return t.ix.shape(name) }

// Const returns the initializer or Constant value named name, nil if none.
func (t IndexForTest) Const(name string) *onnxpb.TensorProto { return t.ix.consts[name] }

var (
	NodeLabel     = nodeLabel
	NodeReads     = nodeReads
	DeclaredShape = declaredShape
	FormatDims    = formatDims
)
