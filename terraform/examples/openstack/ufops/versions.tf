terraform {
  # Terraform 1.5 or OpenTofu 1.6, like the rest of terraform/.
  required_version = ">= 1.5.0"

  required_providers {
    # qufop's own provider (terraform/provider, built by make as
    # bin/terraform-provider-qufop), installed from a filesystem mirror
    # (terraform/README.md): Terraform looks for it under
    # registry.terraform.io, OpenTofu under registry.opentofu.org.
    qufop = {
      source = "qufop/qufop"
    }
  }
}
