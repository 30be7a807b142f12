// Command terraform-provider-qufop is the Terraform (and OpenTofu) provider
// of qufop: see terraform/provider/README.md.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/qufop/qufop/terraform/provider"
)

// version is set at build time (make build-provider: -X main.version=...).
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider for a debugger: it prints TF_REATTACH_PROVIDERS to set in the shell running terraform")
	flag.Parse()
	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		// The address the CLI configuration's filesystem_mirror serves it
		// under; OpenTofu maps registry.terraform.io to its own registry.
		Address: "registry.terraform.io/qufop/qufop",
		Debug:   debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}
