terraform {
  # Nothing newer than Terraform 1.5, the last MPL release (and OpenTofu,
  # which forked from it): optional() object attributes with defaults,
  # startswith, preconditions. Checked with Terraform 1.5.7 and OpenTofu 1.6.
  required_version = ">= 1.5.0"

  required_providers {
    # The root configures the provider (address, region, token): the module
    # has no provider block, so it can be used with count and for_each.
    # 2.0.0 parses jobspecs with HCL2 by default and is the release that
    # requires Nomad 1.6 (the jobspecs' target); later 2.x releases work
    # too as long as they keep nomad_job's hcl2 block.
    nomad = {
      source  = "hashicorp/nomad"
      version = ">= 2.0.0, < 3.0.0"
    }
  }
}
