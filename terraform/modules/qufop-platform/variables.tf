# What to deploy

variable "jobs" {
  description = "Platform jobs to run, among \"registry\" (qufop-registry), \"builder\" (qufop-builder, the management API), \"gateway\" (qufop-gateway, a system job) and \"scaler\" (qufop-scaler). Leave out \"registry\" when the cluster has a registry of its own (set registry_address)."
  type        = set(string)
  default     = ["registry", "builder", "gateway", "scaler"]

  validation {
    condition     = alltrue([for j in var.jobs : contains(["registry", "builder", "gateway", "scaler"], j)])
    error_message = "jobs may hold only \"registry\", \"builder\", \"gateway\" and \"scaler\"."
  }
}

variable "jobspecs_dir" {
  description = "Folder holding registry.nomad.hcl, builder.nomad.hcl, gateway.nomad.hcl and scaler.nomad.hcl (null: the repository's jobspecs/, next to terraform/)."
  type        = string
  default     = null

  validation {
    condition = var.jobspecs_dir == null ? true : alltrue([
      for f in ["registry", "builder", "gateway", "scaler"] : fileexists("${var.jobspecs_dir}/${f}.nomad.hcl")
    ])
    error_message = "jobspecs_dir must be a folder holding registry.nomad.hcl, builder.nomad.hcl, gateway.nomad.hcl and scaler.nomad.hcl (the repository's jobspecs/), or null for the repository's own."
  }
}

variable "datacenters" {
  description = "Datacenters the jobs run in (\"*\": all)."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.datacenters) > 0 && alltrue([for d in var.datacenters : can(regex("^([A-Za-z0-9_*-]{1,64})$", d))])
    error_message = "datacenters must list at least one datacenter name (letters, digits, '-', '_', or the wildcard \"*\")."
  }
}

# Images (present on the clients: the jobs use force_pull = false)

variable "image" {
  description = "qufop image of the builder, gateway and scaler, present on every client or pullable from registry_address (a tag other than latest: Nomad would pull latest on every start)."
  type        = string
  default     = "qufop/qufop:dev"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must be a Docker image reference with an explicit tag other than latest, e.g. qufop/qufop:dev or 10.0.0.21:5000/qufop/qufop:v0.4.0."
  }
}

variable "registry_image" {
  description = "Image of the registry job (local/docker-registry:2.8 is made by `bash .ci/image-local.sh registry`; the upstream registry:2.8.3 needs registry_entrypoint = [\"registry\", \"serve\"])."
  type        = string
  default     = "local/docker-registry:2.8"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.registry_image)) && !endswith(var.registry_image, ":latest")
    error_message = "registry_image must be a Docker image reference with an explicit tag other than latest, e.g. local/docker-registry:2.8 or registry:2.8.3."
  }
}

variable "registry_entrypoint" {
  description = "Registry program and its serve verb inside registry_image (null: the jobspec's, [\"/usr/bin/docker-registry\", \"serve\"])."
  type        = list(string)
  default     = null

  validation {
    condition     = var.registry_entrypoint == null ? true : length(var.registry_entrypoint) > 0
    error_message = "registry_entrypoint must be null or a non-empty list, e.g. [\"registry\", \"serve\"]."
  }
}

# Where things listen

variable "ports" {
  description = "Static ports on the nodes: registry (baked into UFOP image names), builder (the management API, QUFOP_ADDR) and gateway (on every node that runs one). The scaler's port is dynamic."
  type = object({
    registry = optional(number, 5000)
    builder  = optional(number, 8081)
    gateway  = optional(number, 8080)
  })
  default = {}

  validation {
    condition = alltrue([for p in [var.ports.registry, var.ports.builder, var.ports.gateway] :
    p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "ports.registry, ports.builder and ports.gateway must be whole numbers from 1 to 65535."
  }
  validation {
    condition     = length(distinct([var.ports.registry, var.ports.builder, var.ports.gateway])) == 3
    error_message = "ports.registry, ports.builder and ports.gateway must differ: the jobs use host networking, so two on one node would collide."
  }
}

variable "registry_address" {
  description = "host:port the builder pushes UFOP images to and every client's Docker pulls them from, the same on every node (null: 127.0.0.1:<ports.registry>, right only on a one-node cluster). A plain-HTTP registry outside 127.0.0.0/8 must be in each Docker daemon's insecure-registries."
  type        = string
  default     = null

  validation {
    condition     = var.registry_address == null ? true : can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}$", var.registry_address))
    error_message = "registry_address must be host:port without a scheme, e.g. 10.0.0.21:5000, or null for 127.0.0.1:<ports.registry>."
  }
}

variable "nomad_addr" {
  description = "Nomad HTTP address as the builder and scaler tasks see it (null: the jobspecs' http://<node address>:4646, the node's own agent). A runtime value Nomad fills in on the node, such as $${attr.unique.network.ip-address}, is written with a doubled $ in HCL so that it reaches the task unchanged."
  type        = string
  default     = null

  validation {
    condition     = var.nomad_addr == null ? true : can(regex("^https?://", var.nomad_addr))
    error_message = "nomad_addr must be an http:// or https:// URL, or null for the node's own agent."
  }
}

variable "consul_addr" {
  description = "Consul HTTP address as the builder, gateway and scaler tasks see it (null: the jobspecs' http://<node address>:8500, the node's own agent)."
  type        = string
  default     = null

  validation {
    condition     = var.consul_addr == null ? true : can(regex("^https?://", var.consul_addr))
    error_message = "consul_addr must be an http:// or https:// URL, or null for the node's own agent."
  }
}

variable "ufop_namespace" {
  description = "Nomad namespace of the ufop-<name> jobs the builder and scaler manage (NOMAD_NAMESPACE; must exist)."
  type        = string
  default     = "default"

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,128}$", var.ufop_namespace))
    error_message = "ufop_namespace must be a Nomad namespace name: 1 to 128 letters, digits or '-'."
  }
}

variable "ufop_network" {
  description = "Docker network the UFOP jobs run on, made on every client beforehand (see Isolation in jobspecs/README.md). Empty: Docker's default bridge, which does not isolate UFOP instances from one another or from the node."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?$", var.ufop_network))
    error_message = "ufop_network must be empty or a Docker network name (letters, digits, '_', '.', '-', starting with a letter or digit)."
  }
}

# Gateway

variable "buckets" {
  description = "Buckets the gateways serve: bucket NAME is folder NAME of the host volume bucket_volume on every gateway node."
  type        = list(string)
  default     = ["demo"]

  validation {
    condition     = length(var.buckets) > 0 && alltrue([for b in var.buckets : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", b))]) && length(distinct(var.buckets)) == length(var.buckets)
    error_message = "buckets must list at least one bucket, each once: lower-case letters, digits and '-', starting with a letter or digit, at most 63 characters."
  }
}

variable "bucket_volume" {
  description = "Client host volume holding one folder per bucket (nodes without it run no gateway)."
  type        = string
  default     = "qufop-buckets"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", var.bucket_volume))
    error_message = "bucket_volume must be a host volume name: 1 to 128 letters, digits, '-' or '_'."
  }
}

variable "owner" {
  description = "User who owns the buckets served (a private UFOP serves only its owner)."
  type        = string
  default     = "admin"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.owner))
    error_message = "owner must be a user name: 1 to 64 letters, digits, '-' or '_'."
  }
}

# Registry

variable "registry_volume" {
  description = "Client host volume holding the registry's blobs (define it on one node, so that the registry, whose address is in every image name, does not move)."
  type        = string
  default     = "qufop-registry"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", var.registry_volume))
    error_message = "registry_volume must be a host volume name: 1 to 128 letters, digits, '-' or '_'."
  }
}

# Scaler

variable "scaler_count" {
  description = "Scalers running: one leads (a Consul lock), the others wait to take over."
  type        = number
  default     = 2

  validation {
    condition     = var.scaler_count >= 1 && var.scaler_count <= 5 && floor(var.scaler_count) == var.scaler_count
    error_message = "scaler_count must be a whole number from 1 to 5 (2 is enough for a fast takeover; only one decides)."
  }
}

variable "job_vars" {
  description = "Further HCL2 variables of a jobspec, by job (registry, builder, gateway, scaler) => name => value as on `nomad job run -var` (lists and numbers in HCL syntax), e.g. { gateway = { workers = \"4\", memory = \"1024\" }, scaler = { prometheus = \"http://10.0.0.7:9090\" } }. The variables this module sets from its own variables are refused here, and so is anything that looks like a key (keys go in admin_keys)."
  type        = map(map(string))
  default     = {}

  validation {
    condition     = alltrue([for j in keys(var.job_vars) : contains(["registry", "builder", "gateway", "scaler"], j)])
    error_message = "job_vars keys must be job names: registry, builder, gateway or scaler."
  }
  validation {
    condition = alltrue(flatten([for j, vs in var.job_vars : [for n in keys(vs) :
    !contains(["datacenters", "image", "entrypoint", "port", "registry", "storage_volume", "nomad_addr", "consul_addr", "nomad_namespace", "ufop_network", "buckets", "bucket_volume", "owner", "count"], n)]]))
    error_message = "job_vars must not set datacenters, image, entrypoint, port, registry, storage_volume, nomad_addr, consul_addr, nomad_namespace, ufop_network, buckets, bucket_volume, owner or count: use the module's variables of the same meaning (datacenters, image, registry_image, registry_entrypoint, ports, registry_address, registry_volume, nomad_addr, consul_addr, ufop_namespace, ufop_network, buckets, bucket_volume, owner, scaler_count)."
  }
  validation {
    condition     = alltrue(flatten([for j, vs in var.job_vars : [for n in keys(vs) : !can(regex("(?i)(secret|token|password|access_key)", n))]]))
    error_message = "job_vars must not carry keys or tokens: job variables are part of the job, readable by anyone who can read it. Put the admin keys in admin_keys (a Nomad Variable)."
  }
}

# Keys

variable "admin_keys" {
  description = "The platform's admin keys (what `qufop login` asks for), stored as the Nomad Variable nomad/jobs/qufop-builder (items access_key and secret_key) that the builder's template renders into its environment; never a job variable or argument. Null: no variable, and the builder generates keys once into its allocation's admin.json (jobspecs/README.md). They are in the Terraform state, as every nomad_variable's items are: keep the state private."
  type = object({
    access_key = string
    secret_key = string
  })
  default   = null
  sensitive = true

  validation {
    condition     = var.admin_keys == null ? true : can(regex("^[A-Za-z0-9_-]{4,128}$", var.admin_keys.access_key))
    error_message = "admin_keys.access_key must be 4 to 128 letters, digits, '-' or '_'."
  }
  validation {
    condition     = var.admin_keys == null ? true : can(regex("^[A-Za-z0-9+/=_.~-]{16,256}$", var.admin_keys.secret_key))
    error_message = "admin_keys.secret_key must be 16 to 256 characters of letters, digits and + / = _ . ~ - (e.g. `openssl rand -base64 30`): no spaces, quotes or newlines, which would break the environment file the builder reads it from."
  }
}

# How the user reaches the nodes (for the outputs)

variable "node_addresses" {
  description = "Nomad node name => address (host name or IP, no port) the user reaches that node on, e.g. a public IP. Used only for the outputs gateway_urls and management_url, whose nodes Nomad chooses."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for a in values(var.node_addresses) : can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", a))])
    error_message = "node_addresses values must be host names or IPv4 addresses without scheme or port, e.g. 203.0.113.7."
  }
}

variable "default_node_address" {
  description = "Address for the nodes not in node_addresses (e.g. \"127.0.0.1\" on a one-node cluster). Null: such nodes are named by their Nomad node name, which must then resolve for the user."
  type        = string
  default     = null

  validation {
    condition     = var.default_node_address == null ? true : can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", var.default_node_address))
    error_message = "default_node_address must be a host name or IPv4 address without scheme or port, or null."
  }
}

# Nomad provider behaviour

variable "deploy_timeout" {
  description = "How long apply waits for each job's deployment to become healthy (nomad_job's create and update timeouts)."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.deploy_timeout))
    error_message = "deploy_timeout must be a duration such as 300s, 10m or 1h."
  }
}

variable "purge_on_destroy" {
  description = "Purge the jobs from Nomad on destroy (false: they stay, stopped, in Nomad's history until garbage collection)."
  type        = bool
  default     = true
}
