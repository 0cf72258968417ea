// Command etcd is the etcd server of the version Kubernetes is built with,
// from its published Go modules, for NovaNet's tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
