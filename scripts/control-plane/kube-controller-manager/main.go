// Command kube-controller-manager is the upstream kube-controller-manager (k8s.io/kubernetes/cmd/kube-controller-manager/app)
// built from the Go module proxy for the project's test control plane.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
