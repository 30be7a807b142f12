terraform {
  # Nothing newer than Terraform 1.5, the last MPL release (and OpenTofu,
  # which forked from it), like the modules this root composes: optional()
  # object attributes, cidrhost, for_each over maps.
  required_version = ">= 1.5.0"

  required_providers {
    # OpenStack: its provider (MPL) is a Go module served by the Go module
    # proxy, so the root can be built and validated without a cloud, and
    # the cloud itself is open source and can be self-hosted. 3.x is the
    # line whose resources this root uses (networking_*_v2, compute_*_v2).
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "~> 3.4"
    }
  }
}
