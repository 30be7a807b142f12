# OpenStack: where the machines go. Credentials are not variables: the
# provider reads them from clouds.yaml (var.cloud) or the OS_* environment
# variables of an openrc file, so they never reach the code or the state.

variable "cloud" {
  description = "Entry of clouds.yaml to use (null: the OS_* environment variables, e.g. from `source openrc.sh`)."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix of every name this root makes (network, router, security groups, instances)."
  type        = string
  default     = "qufop"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.name_prefix))
    error_message = "name_prefix must be 1 to 32 lower-case letters, digits and '-', starting with a letter (it becomes part of the host names)."
  }
}

variable "external_network" {
  description = "Name of the external (provider) network: the router's gateway, and the pool of the floating IPs."
  type        = string

  validation {
    condition     = length(var.external_network) > 0
    error_message = "external_network must name your cloud's external network (`openstack network list --external`)."
  }
}

variable "subnet_cidr" {
  description = "IPv4 CIDR of the cluster's subnet, /24 or larger. Servers get fixed addresses from host 10 on, the registry machine host 20; DHCP hands out the rest from host 100 on."
  type        = string
  default     = "10.40.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && !strcontains(var.subnet_cidr, ":") && try(tonumber(split("/", var.subnet_cidr)[1]) <= 24, false)
    error_message = "subnet_cidr must be an IPv4 CIDR with a prefix of /24 or shorter (e.g. 10.40.0.0/24): the fixed addresses are hosts 10 to 20, DHCP's pool starts at host 100."
  }
}

variable "dns_nameservers" {
  description = "DNS servers handed out by the subnet's DHCP (empty: the cloud's default)."
  type        = list(string)
  default     = []
}

variable "image_name" {
  description = "Glance image of every machine: a Debian or Ubuntu cloud image with cloud-init (the rendered user data uses apt and systemd), e.g. \"debian-12-genericcloud-amd64\"."
  type        = string

  validation {
    condition     = length(var.image_name) > 0
    error_message = "image_name must name a Debian or Ubuntu cloud image (`openstack image list`)."
  }
}

variable "key_pair" {
  description = "Name of an existing Nova key pair put on every machine for SSH (`openstack keypair create --public-key ~/.ssh/id_ed25519.pub qufop`). The root makes none, so no private key ends up in the state."
  type        = string

  validation {
    condition     = length(var.key_pair) > 0
    error_message = "key_pair must name an existing key pair (`openstack keypair list`)."
  }
}

variable "server_flavor" {
  description = "Flavor of the server machines (Nomad and Consul servers: 2 vCPU and 4 GB are plenty)."
  type        = string
}

variable "client_flavor" {
  description = "Flavor of the client machines, unless client_flavors names one for the class."
  type        = string
}

variable "client_flavors" {
  description = "Flavor per client class (class => flavor), for classes that need other machines than client_flavor."
  type        = map(string)
  default     = {}
}

variable "floating_ips" {
  description = "Give every machine a floating IP from external_network (SSH, the Nomad API, the gateway). false: the operator reaches the subnet some other way (VPN, bastion) and the outputs hold private addresses."
  type        = bool
  default     = true
}

# Who may reach what. Nothing is open to the world unless listed here.

variable "operator_cidrs" {
  description = "CIDRs allowed SSH to every machine and the Nomad API (4646) on the servers: the platform stage's Nomad provider and the nomad CLI come from there."
  type        = list(string)

  validation {
    condition     = length(var.operator_cidrs) > 0 && alltrue([for c in var.operator_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "operator_cidrs must list IPv4 CIDRs (e.g. 203.0.113.7/32, your address: curl -s https://ifconfig.me)."
  }
}

variable "allowed_cidrs" {
  description = "CIDRs allowed to the clients' gateway port (processing URLs) and management port (the qufop CLI and Terraform provider); 0.0.0.0/0 for a public gateway."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "allowed_cidrs must list IPv4 CIDRs (0.0.0.0/0 for everyone)."
  }
}

# The platform's ports: the jobspecs' defaults. The platform stage
# (platform/) reads these from this root's outputs, so both agree.

variable "gateway_port" {
  description = "Port of the gateway on every client with buckets (jobspecs/gateway.nomad.hcl var.port)."
  type        = number
  default     = 8080
}

variable "management_port" {
  description = "Port of the management API, on the client the builder runs on (jobspecs/builder.nomad.hcl var.port)."
  type        = number
  default     = 8081
}

variable "registry_port" {
  description = "Port of the registry, on the registry machine (jobspecs/registry.nomad.hcl var.port)."
  type        = number
  default     = 5000
}

# Passed to modules/nomad-cluster-config (its variables.tf has the details).

variable "server_count" {
  description = "Server machines: 3 or 5 (the module refuses other counts)."
  type        = number
  default     = 3
}

variable "datacenter" {
  description = "Nomad and Consul datacenter."
  type        = string
  default     = "dc1"
}

variable "region" {
  description = "Nomad region."
  type        = string
  default     = "global"
}

variable "node_pools" {
  description = "Nomad node pools besides \"default\" (name => description)."
  type        = map(string)
  default     = {}
}

variable "client_classes" {
  description = "Client machines by node class: count, node_pool, buckets (runs a gateway), registry (host volume qufop-registry), meta. Exactly one machine must have registry = true: its fixed address is the registry's, in every client's Docker settings."
  type = map(object({
    count     = number
    node_pool = optional(string, "default")
    buckets   = optional(bool, true)
    registry  = optional(bool, true)
    meta      = optional(map(string), {})
  }))
  default = {
    gateway = { count = 2, registry = false }
    infra   = { count = 1, buckets = false }
  }

  validation {
    condition     = sum(concat([0], [for c in values(var.client_classes) : c.count if c.registry])) == 1
    error_message = "client_classes must have exactly one machine with registry = true (e.g. infra = { count = 1, buckets = false }, and registry = false on the other classes): the registry's address is baked into every UFOP image name and every client's Docker settings, so it must be one machine known before boot."
  }
  validation {
    condition     = alltrue([for n in keys(var.client_classes) : can(regex("^[a-z][a-z0-9-]{0,23}$", n))])
    error_message = "client_classes names must be 1 to 24 lower-case letters, digits and '-', starting with a letter: each machine is named <name_prefix>-<class>-<n>, which is also its host name and Nomad node name."
  }
  validation {
    condition     = sum(concat([0], [for c in values(var.client_classes) : c.count])) <= 80
    error_message = "client_classes may have at most 80 machines in all, so that DHCP's pool (host 100 on) holds them in a /24."
  }
}

variable "bucket_folders" {
  description = "Buckets served by the gateways (bucket => host folder on the machines with buckets)."
  type        = map(string)
  default = {
    demo = "/srv/qufop/buckets/demo"
  }
}

variable "acl_enabled" {
  description = "ACLs on in Nomad and Consul; bootstrap them after the first boot (terraform/README.md). The platform stage then needs a Nomad token."
  type        = bool
  default     = false
}

variable "nomad_version" {
  description = "Nomad version installed on the machines."
  type        = string
  default     = "1.6.5"
}

variable "consul_version" {
  description = "Consul version installed on the machines."
  type        = string
  default     = "1.16.3"
}

variable "nomad_gossip_key" {
  description = "Nomad's gossip key (`nomad operator gossip keyring generate`). Passed in, e.g. TF_VAR_nomad_gossip_key; only a hash of the user data that carries it is kept in the state."
  type        = string
  sensitive   = true
}

variable "consul_gossip_key" {
  description = "Consul's gossip key (`consul keygen`). Passed in, e.g. TF_VAR_consul_gossip_key; only a hash of the user data that carries it is kept in the state."
  type        = string
  sensitive   = true
}
