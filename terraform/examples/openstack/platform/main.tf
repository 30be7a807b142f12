# Stage 2 of terraform/README.md: the platform's jobs on the cluster of
# stage 1 (the root one folder up). A root of its own because the Nomad
# provider is configured from stage 1's outputs: in one root, its address
# would be unknown until the servers exist, and Terraform configures
# providers before it creates anything. Stage 1's state is read here, so
# apply stage 1 first (and wait for the cluster to boot: see the README).

data "terraform_remote_state" "cluster" {
  backend = "local"
  config = {
    path = var.cluster_state
  }

  lifecycle {
    # The backend's own error ("No stored state was found") does not say
    # what to do.
    precondition {
      condition     = fileexists(var.cluster_state)
      error_message = "No stage-1 state at ${var.cluster_state} (relative to this folder): run terraform apply in terraform/examples/openstack first, or set cluster_state to its state file."
    }
  }
}

locals {
  cluster  = data.terraform_remote_state.cluster.outputs
  platform = local.cluster.platform
}

provider "nomad" {
  address   = local.cluster.nomad_addr
  secret_id = var.nomad_token
}

module "platform" {
  source = "../../../modules/qufop-platform"

  datacenters         = [local.platform.datacenter]
  image               = var.image
  registry_image      = var.registry_image
  registry_entrypoint = var.registry_entrypoint
  registry_address    = local.platform.registry_address
  ufop_network        = var.ufop_network
  buckets             = local.platform.buckets
  admin_keys          = var.admin_keys
  node_addresses      = local.platform.node_addresses

  # The ports stage 1's security groups open.
  ports = {
    registry = local.platform.registry_port
    builder  = local.platform.management_port
    gateway  = local.platform.gateway_port
  }
}
