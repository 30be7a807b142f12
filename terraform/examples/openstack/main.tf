# Stage 1 of terraform/README.md: the machines of a Nomad + Consul cluster
# ready for qufop, on OpenStack. The platform's jobs are stage 2
# (platform/): the Nomad provider there needs the address of a Nomad that
# this stage creates, and a provider cannot be configured from a resource
# of the same apply that has not been created yet.

provider "openstack" {
  cloud = var.cloud
}

locals {
  # Fixed addresses, chosen before anything boots: the servers' go into
  # every agent's retry_join, the registry machine's into every client's
  # Docker settings (insecure-registries) and the builder's image names.
  # OpenStack has a cloud auto-join in go-discover (provider=os), but it
  # needs OpenStack credentials on every machine; fixed ports need none.
  server_ips  = [for i in range(var.server_count) : cidrhost(var.subnet_cidr, 10 + i)]
  registry_ip = cidrhost(var.subnet_cidr, 20)

  # One entry per client machine, "<class>-<n>", in a stable order.
  clients = merge([
    for class, c in var.client_classes : {
      for n in range(c.count) : "${class}-${n}" => {
        class    = class
        flavor   = lookup(var.client_flavors, class, var.client_flavor)
        buckets  = c.buckets
        registry = c.registry
      }
    }
  ]...)
}

module "cluster_config" {
  source = "../../modules/nomad-cluster-config"

  server_count     = var.server_count
  retry_join       = local.server_ips
  datacenter       = var.datacenter
  region           = var.region
  node_pools       = var.node_pools
  client_classes   = var.client_classes
  bucket_folders   = var.bucket_folders
  registry_address = "${local.registry_ip}:${var.registry_port}"
  acl_enabled      = var.acl_enabled
  nomad_version    = var.nomad_version
  consul_version   = var.consul_version

  nomad_gossip_key  = var.nomad_gossip_key
  consul_gossip_key = var.consul_gossip_key
}

# Network: a private network and subnet, routed to the external network
# (cloud-init installs packages from the Internet).

data "openstack_networking_network_v2" "external" {
  name     = var.external_network
  external = true
}

resource "openstack_networking_network_v2" "cluster" {
  name           = "${var.name_prefix}-net"
  admin_state_up = true
}

resource "openstack_networking_subnet_v2" "cluster" {
  name            = "${var.name_prefix}-subnet"
  network_id      = openstack_networking_network_v2.cluster.id
  cidr            = var.subnet_cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers

  # DHCP stays above the fixed addresses (hosts 10 to 20).
  allocation_pool {
    start = cidrhost(var.subnet_cidr, 100)
    end   = cidrhost(var.subnet_cidr, -2)
  }
}

resource "openstack_networking_router_v2" "cluster" {
  name                = "${var.name_prefix}-router"
  admin_state_up      = true
  external_network_id = data.openstack_networking_network_v2.external.id
}

resource "openstack_networking_router_interface_v2" "cluster" {
  router_id = openstack_networking_router_v2.cluster.id
  subnet_id = openstack_networking_subnet_v2.cluster.id
}

# Security groups. Neutron gives a new group no ingress rule and its two
# default egress rules (any IPv4, any IPv6), which stay: the machines
# download packages and images. Ingress is only what follows.

resource "openstack_networking_secgroup_v2" "cluster" {
  name        = "${var.name_prefix}-cluster"
  description = "qufop: between cluster members, the Nomad, Consul and platform ports only"
}

resource "openstack_networking_secgroup_v2" "server" {
  name        = "${var.name_prefix}-server"
  description = "qufop servers: SSH and the Nomad API from the operator"
}

resource "openstack_networking_secgroup_v2" "client" {
  name        = "${var.name_prefix}-client"
  description = "qufop clients: SSH from the operator, the gateway and management ports from the allowed CIDRs"
}

locals {
  # Between members (remote group: the cluster group itself).
  member_rules = {
    nomad-http         = { protocol = "tcp", from = 4646, to = 4646, why = "Nomad HTTP API" }
    nomad-rpc          = { protocol = "tcp", from = 4647, to = 4647, why = "Nomad RPC, clients to servers and among servers" }
    nomad-serf-tcp     = { protocol = "tcp", from = 4648, to = 4648, why = "Nomad servers' gossip" }
    nomad-serf-udp     = { protocol = "udp", from = 4648, to = 4648, why = "Nomad servers' gossip" }
    consul-rpc         = { protocol = "tcp", from = 8300, to = 8300, why = "Consul RPC to the servers" }
    consul-serf-tcp    = { protocol = "tcp", from = 8301, to = 8302, why = "Consul LAN and WAN gossip" }
    consul-serf-udp    = { protocol = "udp", from = 8301, to = 8302, why = "Consul LAN and WAN gossip" }
    consul-http        = { protocol = "tcp", from = 8500, to = 8501, why = "Consul HTTP (HTTPS with TLS on)" }
    consul-dns-tcp     = { protocol = "tcp", from = 8600, to = 8600, why = "Consul DNS" }
    consul-dns-udp     = { protocol = "udp", from = 8600, to = 8600, why = "Consul DNS" }
    registry           = { protocol = "tcp", from = var.registry_port, to = var.registry_port, why = "registry: the clients' Docker pulls, the builder's pushes" }
    gateway            = { protocol = "tcp", from = var.gateway_port, to = var.gateway_port, why = "gateway: UFOP instances fetch /uop inputs from it" }
    management         = { protocol = "tcp", from = var.management_port, to = var.management_port, why = "builder's management API" }
    nomad-dynamic-port = { protocol = "tcp", from = 20000, to = 32000, why = "Nomad's dynamic ports: UFOP instances, called by the gateways of other nodes" }
  }

  # From outside (TCP only): group, port, CIDR.
  outside_rules = merge(
    { for c in var.operator_cidrs : "server-ssh-${c}" => { group = "server", port = 22, cidr = c } },
    { for c in var.operator_cidrs : "server-nomad-${c}" => { group = "server", port = 4646, cidr = c } },
    { for c in var.operator_cidrs : "client-ssh-${c}" => { group = "client", port = 22, cidr = c } },
    { for c in var.allowed_cidrs : "client-gateway-${c}" => { group = "client", port = var.gateway_port, cidr = c } },
    { for c in var.allowed_cidrs : "client-management-${c}" => { group = "client", port = var.management_port, cidr = c } },
  )
  groups = {
    server = openstack_networking_secgroup_v2.server.id
    client = openstack_networking_secgroup_v2.client.id
  }
}

resource "openstack_networking_secgroup_rule_v2" "member" {
  for_each = local.member_rules

  description       = "qufop ${each.key}: ${each.value.why}"
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value.protocol
  port_range_min    = each.value.from
  port_range_max    = each.value.to
  remote_group_id   = openstack_networking_secgroup_v2.cluster.id
}

resource "openstack_networking_secgroup_rule_v2" "outside" {
  for_each = local.outside_rules

  description       = "qufop ${each.key}"
  security_group_id = local.groups[each.value.group]
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.cidr
}

# Servers: a port with a fixed address each, then the instance on it.

resource "openstack_networking_port_v2" "server" {
  count = var.server_count

  name               = "${var.name_prefix}-server-${count.index}"
  network_id         = openstack_networking_network_v2.cluster.id
  security_group_ids = [openstack_networking_secgroup_v2.cluster.id, openstack_networking_secgroup_v2.server.id]

  fixed_ip {
    subnet_id  = openstack_networking_subnet_v2.cluster.id
    ip_address = local.server_ips[count.index]
  }
}

resource "openstack_compute_instance_v2" "server" {
  count = var.server_count

  name        = "${var.name_prefix}-server-${count.index}"
  image_name  = var.image_name
  flavor_name = var.server_flavor
  key_pair    = var.key_pair
  # Rendered by the module; the provider keeps only its SHA-1 in the state.
  # A change of it replaces the machine (see terraform/README.md).
  user_data = module.cluster_config.server_cloud_init
  metadata  = { qufop_role = "server" }

  network {
    port = openstack_networking_port_v2.server[count.index].id
  }

  # The router must be in place before cloud-init downloads packages.
  depends_on = [openstack_networking_router_interface_v2.cluster]
}

# Clients: one per entry of local.clients; only the registry machine has a
# fixed address, the others take one from DHCP.

resource "openstack_networking_port_v2" "client" {
  for_each = local.clients

  name               = "${var.name_prefix}-${each.key}"
  network_id         = openstack_networking_network_v2.cluster.id
  security_group_ids = [openstack_networking_secgroup_v2.cluster.id, openstack_networking_secgroup_v2.client.id]

  fixed_ip {
    subnet_id  = openstack_networking_subnet_v2.cluster.id
    ip_address = each.value.registry ? local.registry_ip : null
  }
}

resource "openstack_compute_instance_v2" "client" {
  for_each = local.clients

  name        = "${var.name_prefix}-${each.key}"
  image_name  = var.image_name
  flavor_name = each.value.flavor
  key_pair    = var.key_pair
  user_data   = module.cluster_config.client_cloud_init[each.value.class]
  metadata    = { qufop_role = "client", qufop_class = each.value.class }

  network {
    port = openstack_networking_port_v2.client[each.key].id
  }

  depends_on = [openstack_networking_router_interface_v2.cluster]
}

# Floating IPs: the operator's way in (SSH, the Nomad API) and the
# gateways' public addresses.

resource "openstack_networking_floatingip_v2" "server" {
  count = var.floating_ips ? var.server_count : 0
  pool  = var.external_network
}

resource "openstack_networking_floatingip_associate_v2" "server" {
  count       = var.floating_ips ? var.server_count : 0
  floating_ip = openstack_networking_floatingip_v2.server[count.index].address
  port_id     = openstack_networking_port_v2.server[count.index].id
  depends_on  = [openstack_networking_router_interface_v2.cluster]
}

resource "openstack_networking_floatingip_v2" "client" {
  for_each = var.floating_ips ? local.clients : {}
  pool     = var.external_network
}

resource "openstack_networking_floatingip_associate_v2" "client" {
  for_each    = var.floating_ips ? local.clients : {}
  floating_ip = openstack_networking_floatingip_v2.client[each.key].address
  port_id     = openstack_networking_port_v2.client[each.key].id
  depends_on  = [openstack_networking_router_interface_v2.cluster]
}
