# Cluster shape

variable "server_count" {
  description = "Nomad and Consul servers (one of each per server machine): 3 or 5."
  type        = number
  default     = 3

  validation {
    condition     = var.server_count == 3 || var.server_count == 5
    error_message = "server_count must be 3 or 5: Raft needs a majority of the servers, so an even count tolerates no more failures than the odd count below it (4 survives 1 loss, like 3; 6 survives 2, like 5), and 1 tolerates none."
  }
}

variable "retry_join" {
  description = "How agents find the servers: the servers' addresses (host names or IPv4, without port; the module adds each agent's port) or cloud auto-join strings (\"provider=aws tag_key=role tag_value=qufop-server\")."
  type        = list(string)

  validation {
    condition     = length(var.retry_join) > 0
    error_message = "retry_join must list at least one server address or cloud auto-join string."
  }
  validation {
    condition = alltrue([for a in var.retry_join :
      startswith(a, "provider=") || can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", a))
    ])
    error_message = "Each retry_join entry must be a host name or IPv4 address without a port (e.g. 10.0.0.5) or a cloud auto-join string starting with \"provider=\"."
  }
}

variable "datacenter" {
  description = "Nomad and Consul datacenter of every agent (the jobs' `datacenters`)."
  type        = string
  default     = "dc1"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", var.datacenter))
    error_message = "datacenter must be non-empty: letters, digits, '-' and '_', at most 64 characters, starting with a letter or digit."
  }
}

variable "region" {
  description = "Nomad region (Consul has none)."
  type        = string
  default     = "global"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", var.region))
    error_message = "region must be non-empty: letters, digits, '-' and '_', at most 64 characters, starting with a letter or digit."
  }
}

variable "node_pools" {
  description = "Nomad node pools the client classes may name, besides the built-in \"default\" (name => description). Rendered as specs for `nomad node pool apply`; clients also create their pool when they register."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for n in keys(var.node_pools) : can(regex("^[A-Za-z0-9_-]{1,128}$", n)) && n != "default" && n != "all"])
    error_message = "node_pools names must be 1 to 128 letters, digits, '-' or '_', and not \"default\" or \"all\" (built into Nomad)."
  }
}

variable "client_classes" {
  description = <<-EOT
    Nomad client machines by node class (class name => settings):
      count      machines of the class (the cloud root makes them)
      node_pool  "default" or a key of node_pools
      buckets    host volume qufop-buckets and the bucket folders (the gateway runs there)
      registry   host volume qufop-registry (the registry job runs there)
      meta       client meta (constraint targets)
  EOT
  type = map(object({
    count     = number
    node_pool = optional(string, "default")
    buckets   = optional(bool, true)
    registry  = optional(bool, true)
    meta      = optional(map(string), {})
  }))
  default = {
    qufop = { count = 2 }
  }

  validation {
    condition     = length(var.client_classes) > 0 && alltrue([for c in values(var.client_classes) : c.count >= 0 && floor(c.count) == c.count])
    error_message = "client_classes must name at least one class, and every count must be a whole number >= 0."
  }
  validation {
    condition     = alltrue([for n in keys(var.client_classes) : can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", n))])
    error_message = "client_classes names (the node_class) must be letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters."
  }
  validation {
    condition     = sum(concat([0], [for c in values(var.client_classes) : c.count])) > 0
    error_message = "client_classes must have at least one client machine (a count > 0): the platform's jobs run on clients only."
  }
  validation {
    condition     = anytrue([for c in values(var.client_classes) : c.buckets && c.count > 0]) && anytrue([for c in values(var.client_classes) : c.registry && c.count > 0])
    error_message = "client_classes must have machines with buckets = true (the gateway needs host volume qufop-buckets) and with registry = true (the registry job needs host volume qufop-registry)."
  }
}

# Host volumes

variable "bucket_folders" {
  description = "Buckets served by the gateways (bucket name => host path of its folder). Each is its own host volume qufop-bucket-<name>, and is the folder <name> of host volume qufop-buckets (bind-mounted there when the path is elsewhere)."
  type        = map(string)
  default = {
    demo = "/srv/qufop/buckets/demo"
  }

  validation {
    condition     = alltrue([for n in keys(var.bucket_folders) : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", n))])
    error_message = "bucket_folders names must be qufop bucket names: [a-z0-9][a-z0-9-]{0,62}."
  }
  validation {
    condition     = alltrue([for p in values(var.bucket_folders) : can(regex("^(/[A-Za-z0-9._-]+)+$", p)) && !strcontains(p, "/../") && !endswith(p, "/..")])
    error_message = "bucket_folders paths must be absolute paths of letters, digits, '.', '_' and '-' (no spaces, quotes or '..')."
  }
}

variable "buckets_path" {
  description = "Host path of host volume qufop-buckets (one folder per bucket, owned by uid 10001, the gateway's user)."
  type        = string
  default     = "/srv/qufop/buckets"

  validation {
    condition     = can(regex("^(/[A-Za-z0-9._-]+)+$", var.buckets_path)) && !strcontains(var.buckets_path, "..")
    error_message = "buckets_path must be an absolute path of letters, digits, '.', '_' and '-' (no spaces, quotes or '..')."
  }
}

variable "registry_path" {
  description = "Host path of host volume qufop-registry (the registry's blobs)."
  type        = string
  default     = "/srv/qufop/registry"

  validation {
    condition     = can(regex("^(/[A-Za-z0-9._-]+)+$", var.registry_path)) && !strcontains(var.registry_path, "..")
    error_message = "registry_path must be an absolute path of letters, digits, '.', '_' and '-' (no spaces, quotes or '..')."
  }
}

# Registry and Docker

variable "registry_address" {
  description = "host:port the clients pull UFOP images from (the registry job's node, or a name in front of it), as passed to the builder's -var registry. null: only 127.0.0.1:5000, which Docker trusts anyway."
  type        = string
  default     = null

  validation {
    condition     = var.registry_address == null || can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}$", var.registry_address))
    error_message = "registry_address must be host:port (e.g. 10.0.0.5:5000): no scheme (http://), path or spaces."
  }
}

variable "registry_tls" {
  description = "true: the registry serves TLS, so it is not listed in Docker's insecure-registries; Docker trusts it through /etc/docker/certs.d/<registry_address>/ca.crt, copied from registry_ca_file when set."
  type        = bool
  default     = false
}

variable "registry_ca_file" {
  description = "Path on the machine of the CA certificate of the registry's TLS certificate (with registry_tls; null when a system CA signs it)."
  type        = string
  default     = null

  validation {
    condition     = var.registry_ca_file == null || can(regex("^(/[A-Za-z0-9._-]+)+$", var.registry_ca_file))
    error_message = "registry_ca_file must be an absolute path of letters, digits, '.', '_' and '-'."
  }
}

variable "docker_volumes" {
  description = "The docker plugin's volumes.enabled on the clients: the builder binds /var/run/docker.sock and runs only where it is true."
  type        = bool
  default     = true
}

# Security

variable "tls" {
  description = "TLS for Nomad (HTTP and RPC) and Consul (HTTPS on ports.consul_https, gRPC on ports.consul_grpc_tls, internal RPC): paths on the machines of the CA certificate, this agent's certificate and its key (put there by the cloud root or an image; never their contents)."
  type = object({
    enabled   = bool
    ca_file   = optional(string)
    cert_file = optional(string)
    key_file  = optional(string)
  })
  default = { enabled = false }

  validation {
    condition = !var.tls.enabled || alltrue([for p in [var.tls.ca_file, var.tls.cert_file, var.tls.key_file] :
      p != null && can(regex("^(/[A-Za-z0-9._-]+)+$", coalesce(p, "-")))
    ])
    error_message = "With tls.enabled, tls.ca_file, tls.cert_file and tls.key_file must all be absolute paths on the machines (files, not PEM contents)."
  }
}

variable "acl_enabled" {
  description = "ACLs on in Nomad and Consul (default policy deny in Consul). Bootstrap them after the first boot (`nomad acl bootstrap`, `consul acl bootstrap`); the module makes no tokens."
  type        = bool
  default     = false
}

variable "nomad_gossip_key" {
  description = "Nomad servers' gossip encryption key (`nomad operator gossip keyring generate`: 32 bytes, base64). Made outside the module and passed in; null: gossip unencrypted."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.nomad_gossip_key == null || can(regex("^[A-Za-z0-9+/]{43}=$", var.nomad_gossip_key))
    error_message = "nomad_gossip_key must be 32 bytes in base64 (44 characters ending in '='), as `nomad operator gossip keyring generate` prints."
  }
}

variable "consul_gossip_key" {
  description = "Consul's gossip encryption key (`consul keygen`: 32 bytes, base64), for servers and clients. Made outside the module and passed in; null: gossip unencrypted."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.consul_gossip_key == null || can(regex("^[A-Za-z0-9+/]{43}=$", var.consul_gossip_key))
    error_message = "consul_gossip_key must be 32 bytes in base64 (44 characters ending in '='), as `consul keygen` prints."
  }
}

# Installation

variable "nomad_version" {
  description = "Nomad version installed (the platform is tested on 1.6.5)."
  type        = string
  default     = "1.6.5"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.nomad_version))
    error_message = "nomad_version must be a release version such as 1.6.5 (no leading v)."
  }
}

variable "consul_version" {
  description = "Consul version installed (the platform is tested on 1.16.3)."
  type        = string
  default     = "1.16.3"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.consul_version))
    error_message = "consul_version must be a release version such as 1.16.3 (no leading v)."
  }
}

variable "install_from" {
  description = "\"apt\": Nomad and Consul from HashiCorp's apt repository (apt_url); \"releases\": their zip archives from releases_url into /usr/local/bin."
  type        = string
  default     = "apt"

  validation {
    condition     = contains(["apt", "releases"], var.install_from)
    error_message = "install_from must be \"apt\" or \"releases\"."
  }
}

variable "apt_url" {
  description = "HashiCorp's apt repository (or a mirror of it): its gpg key at <apt_url>/gpg."
  type        = string
  default     = "https://apt.releases.hashicorp.com"

  validation {
    condition     = can(regex("^https?://[^\\s'\"]+[^/]$", var.apt_url))
    error_message = "apt_url must be an http(s) URL without spaces, quotes or a trailing '/'."
  }
}

variable "releases_url" {
  description = "Where <releases_url>/nomad/<v>/nomad_<v>_linux_amd64.zip and the Consul archive are (HashiCorp's releases, or a mirror)."
  type        = string
  default     = "https://releases.hashicorp.com"

  validation {
    condition     = can(regex("^https?://[^\\s'\"]+[^/]$", var.releases_url))
    error_message = "releases_url must be an http(s) URL without spaces, quotes or a trailing '/'."
  }
}

# Where the agents listen and keep their files (defaults are the
# packages'; override them to run several agents on one host).

variable "bind_addr" {
  description = "Address the agents bind (a go-sockaddr template is allowed)."
  type        = string
  default     = "{{ GetPrivateIP }}"

  validation {
    condition     = length(var.bind_addr) > 0 && !can(regex("[\"\\\\\\n]", var.bind_addr))
    error_message = "bind_addr must be a non-empty address or go-sockaddr template without double quotes, backslashes or newlines."
  }
}

variable "advertise_addr" {
  description = "Address the agents advertise to the others (null: bind_addr; a go-sockaddr template is allowed). Nomad refuses to default it to a loopback address."
  type        = string
  default     = null

  validation {
    condition     = var.advertise_addr == null || (length(coalesce(var.advertise_addr, "-")) > 0 && !can(regex("[\"\\\\\\n]", coalesce(var.advertise_addr, "-"))) && coalesce(var.advertise_addr, "-") != "0.0.0.0")
    error_message = "advertise_addr must be an address (not 0.0.0.0) or go-sockaddr template, without double quotes, backslashes or newlines."
  }
}

variable "consul_client_addr" {
  description = "Addresses Consul's HTTP and DNS listen on (space-separated): loopback for the node's Nomad, the node's address for the jobs (CONSUL_HTTP_ADDR=http://<node>:8500)."
  type        = string
  default     = "127.0.0.1 {{ GetPrivateIP }}"

  validation {
    condition     = length(var.consul_client_addr) > 0 && !can(regex("[\"\\\\\\n]", var.consul_client_addr))
    error_message = "consul_client_addr must be non-empty, without double quotes, backslashes or newlines."
  }
}

variable "node_name" {
  description = "Node name of both agents (null: the machine's host name, as on real machines; set it to run several agents on one host)."
  type        = string
  default     = null

  validation {
    condition     = var.node_name == null || can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", coalesce(var.node_name, "-")))
    error_message = "node_name must be letters, digits, '.', '-' and '_', starting with a letter or digit, at most 63 characters."
  }
}

variable "consul_agent_addr" {
  description = "Address Nomad reaches its node's Consul agent at (one of consul_client_addr)."
  type        = string
  default     = "127.0.0.1"

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", var.consul_agent_addr))
    error_message = "consul_agent_addr must be a host name or IPv4 address without a port (the port is ports.consul_http, or ports.consul_https with TLS)."
  }
}

variable "ports" {
  description = "Agents' ports (Nomad's and Consul's defaults)."
  type = object({
    nomad_http      = optional(number, 4646)
    nomad_rpc       = optional(number, 4647)
    nomad_serf      = optional(number, 4648)
    consul_http     = optional(number, 8500)
    consul_https    = optional(number, 8501)
    consul_grpc     = optional(number, 8502)
    consul_grpc_tls = optional(number, 8503)
    consul_dns      = optional(number, 8600)
    consul_server   = optional(number, 8300)
    consul_serf_lan = optional(number, 8301)
    consul_serf_wan = optional(number, 8302)
  })
  default = {}

  validation {
    condition     = alltrue([for p in values(var.ports) : p >= 1 && p <= 65535 && floor(p) == p]) && length(distinct(values(var.ports))) == length(values(var.ports))
    error_message = "ports must be distinct whole numbers from 1 to 65535."
  }
}

variable "paths" {
  description = "Agents' folders (the packages' defaults)."
  type = object({
    nomad_config  = optional(string, "/etc/nomad.d")
    nomad_data    = optional(string, "/opt/nomad/data")
    consul_config = optional(string, "/etc/consul.d")
    consul_data   = optional(string, "/opt/consul")
  })
  default = {}

  validation {
    condition     = alltrue([for p in values(var.paths) : can(regex("^(/[A-Za-z0-9._-]+)+$", p)) && !strcontains(p, "..")])
    error_message = "paths must be absolute paths of letters, digits, '.', '_' and '-' (no spaces, quotes or '..')."
  }
}
