// Build module for the daprd sidecar of the local stack (see scripts/stack and docs/LOCAL-STACK.md).
// It only pins github.com/dapr/dapr; scripts/stack builds the package github.com/dapr/dapr/cmd/daprd from here,
// with components.go.txt in place of dapr's component list, so that only the components we use are compiled.
module pakaura.invalid/daprd

go 1.26.4

require github.com/dapr/dapr v1.18.0

// The same replacements as dapr's own go.mod at v1.18.0: `go build` honours replace lines only in the main module.
replace (
	dubbo.apache.org/dubbo-go/v3 => dubbo.apache.org/dubbo-go/v3 v3.0.3-0.20230118042253-4f159a2b38f3
	gopkg.in/couchbaselabs/gocbconnstr.v1 => github.com/couchbaselabs/gocbconnstr v1.0.5
)

replace (
	github.com/chenzhuoyu/iasm => github.com/chenzhuoyu/iasm v0.9.0
	github.com/chzyer/logex => github.com/chzyer/logex v1.2.1
	github.com/gobwas/pool => github.com/gobwas/pool v0.2.1
	github.com/toolkits/concurrent => github.com/niean/gotools v0.0.0-20151221085310-ff3f51fc5c60
)
