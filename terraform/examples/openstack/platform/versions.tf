terraform {
  # Terraform 1.5 or OpenTofu 1.6, like the modules (see ../versions.tf).
  required_version = ">= 1.5.0"

  required_providers {
    # The release qufop-platform is tested with (it requires Nomad 1.6).
    nomad = {
      source  = "hashicorp/nomad"
      version = ">= 2.0.0, < 3.0.0"
    }
  }
}
