locals {
  server_public = [for i in range(var.server_count) : var.floating_ips ? openstack_networking_floatingip_v2.server[i].address : local.server_ips[i]]
  client_public = { for k, c in local.clients : k => var.floating_ips ? openstack_networking_floatingip_v2.client[k].address : openstack_networking_port_v2.client[k].all_fixed_ips[0] }
}

output "nomad_addr" {
  description = "NOMAD_ADDR for the operator (the first server's reachable address): the platform stage's Nomad provider and the nomad CLI."
  value       = "http://${local.server_public[0]}:4646"
}

output "servers" {
  description = "Server machines: private (fixed) and reachable (floating, or private without floating_ips) address."
  value = [for i in range(var.server_count) : {
    name    = openstack_compute_instance_v2.server[i].name
    private = local.server_ips[i]
    public  = local.server_public[i]
  }]
}

output "clients" {
  description = "Client machines (\"<class>-<n>\" => class, buckets (whether it runs a gateway), private and reachable address)."
  value = { for k, c in local.clients : k => {
    class   = c.class
    buckets = c.buckets
    private = openstack_networking_port_v2.client[k].all_fixed_ips[0]
    public  = local.client_public[k]
  } }
}

output "gateway_urls" {
  description = "The gateways (every client with buckets): put a load balancer or DNS round robin in front of them."
  value       = [for k, c in local.clients : "http://${local.client_public[k]}:${var.gateway_port}" if c.buckets]
}

output "ssh" {
  description = "How to log in to the first server (the image's default user: debian on Debian's images, ubuntu on Ubuntu's)."
  value       = "ssh debian@${local.server_public[0]}"
}

# What the platform stage (platform/) reads through terraform_remote_state,
# so that the jobs use the ports the security groups open.
output "platform" {
  description = "Inputs of the platform stage: datacenter, buckets, registry address, ports, the clients' reachable addresses by Nomad node name."
  value = {
    datacenter       = var.datacenter
    buckets          = sort(keys(var.bucket_folders))
    registry_address = "${local.registry_ip}:${var.registry_port}"
    registry_port    = var.registry_port
    gateway_port     = var.gateway_port
    management_port  = var.management_port
    # Nomad node name (the host name: the instance's name) => the address
    # the operator reaches it on, for the platform's gateway and
    # management URLs.
    node_addresses = { for k, c in local.clients : openstack_compute_instance_v2.client[k].name => local.client_public[k] }
  }
}
