terraform {
  # Terraform 1.5 or OpenTofu 1.6, like the rest of terraform/.
  required_version = ">= 1.5.0"

  required_providers {
    # qufop's own provider (terraform/provider, built by make as
    # bin/terraform-provider-qufop), installed from a filesystem mirror
    # (terraform/README.md). The host is written out so that Terraform and
    # OpenTofu, whose default hosts differ, look in the same mirror folder.
    qufop = {
      source = "registry.terraform.io/qufop/qufop"
    }
  }
}
