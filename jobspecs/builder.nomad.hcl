# qufop builder: the control plane. It serves the management API (/v1/, what
# `qufop login/reg/build/chver/resize/...` talk to), builds UFOP images on the
# Docker daemon of its node, pushes them to the registry, keeps records in
# Consul KV under qufop/ and runs each UFOP as the Nomad job ufop-<name>.
#
#   nomad job run -var 'registry=10.0.0.5:5000' jobspecs/builder.nomad.hcl
#
# Needs on its client:
#   - the Docker driver with host paths allowed, for /var/run/docker.sock
#     (client config: plugin "docker" { config { volumes { enabled = true } } });
#   - the image var.image present locally (force_pull is off);
#   - Consul and Nomad agents on the node (the addresses below).
# One instance (count = 1): builds and deployments of a UFOP are serialised in
# the builder, two builders would race.

variable "datacenters" {
  description = "Datacenters the builder may run in (\"*\": all)."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "qufop image, present on the client (a tag other than latest: Nomad would try to pull latest)."
  type        = string
  default     = "qufop/qufop:dev"
}

variable "port" {
  description = "Static port of the management API (QUFOP_ADDR of the CLI)."
  type        = number
  default     = 8081
}

variable "registry" {
  # Every Nomad client's Docker pulls the UFOP images by this address, so it
  # must mean the same registry on every node: 127.0.0.1:5000 only works on a
  # one-node cluster. A plain-HTTP registry elsewhere than 127.0.0.0/8 must be
  # in each daemon's "insecure-registries".
  description = "Registry host:port UFOP images are pushed to and pulled from (--registry)."
  type        = string
  default     = "127.0.0.1:5000"
}

variable "nomad_addr" {
  # $${...} is a literal ${...}: Nomad fills in the node's address when it
  # starts the task; the local client agent forwards API calls to the servers.
  description = "Nomad HTTP address as seen from the task (NOMAD_ADDR)."
  type        = string
  default     = "http://$${attr.unique.network.ip-address}:4646"
}

variable "nomad_namespace" {
  description = "Namespace of the ufop-<name> jobs (NOMAD_NAMESPACE)."
  type        = string
  default     = "default"
}

variable "consul_addr" {
  description = "Consul HTTP address as seen from the task (CONSUL_HTTP_ADDR)."
  type        = string
  default     = "http://$${attr.unique.network.ip-address}:8500"
}

variable "ufop_network" {
  description = "Docker network the UFOP jobs run on (made on every client: see Isolation in jobspecs/README.md). Empty: Docker's default bridge, which does not isolate instances."
  type        = string
  default     = ""
}

variable "cpu" {
  description = "CPU reserved for the builder, MHz (builds run in the Docker daemon, outside this reservation)."
  type        = number
  default     = 500
}

variable "memory" {
  description = "Memory reserved for the builder, MB (uploads are streamed to disk)."
  type        = number
  default     = 256
}

variable "disk" {
  description = "Ephemeral disk for uploads, build contexts and logs, MB."
  type        = number
  default     = 2048
}

job "qufop-builder" {
  datacenters = var.datacenters
  type        = "service"

  # Builds go through the node's Docker daemon, whose socket the task binds:
  # only nodes whose docker plugin allows host volumes. (A node without
  # Docker is filtered out by the task's driver already; its attribute
  # driver.docker is "1", not "true".)
  constraint {
    attribute = "$${attr.driver.docker.volumes.enabled}"
    value     = "true"
  }

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "5s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "builder" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    # The data folder (uploads, build logs, generated admin.json) lives in the
    # allocation; sticky + migrate keep it across updates and, best effort,
    # across moves to another node. Records themselves are in Consul KV.
    ephemeral_disk {
      size    = var.disk
      sticky  = true
      migrate = true
    }

    service {
      provider = "consul"
      name     = "qufop-builder"
      port     = "http"
      tags     = ["qufop", "builder"]

      check {
        name     = "http-alive"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    task "builder" {
      driver = "docker"
      # The image runs as uid 10001; the builder needs the node's Docker
      # socket (root:docker, 0660), which gives root on the node anyway.
      user = "root"
      # SIGTERM: the management API stops taking requests and finishes the
      # ones in flight (up to 20s) before exiting.
      kill_signal    = "SIGTERM"
      kill_timeout   = "25s"
      shutdown_delay = "2s"

      env {
        # Read by nomadapi.DefaultConfig() and consulapi.DefaultConfig().
        # NOMAD_TOKEN and CONSUL_HTTP_TOKEN, when ACLs are on, belong in a
        # template from Nomad Variables (see jobspecs/README.md), not here.
        NOMAD_ADDR       = var.nomad_addr
        NOMAD_NAMESPACE  = var.nomad_namespace
        CONSUL_HTTP_ADDR = var.consul_addr
        # The registry address goes in --registry below: the builder reads no
        # environment variable for it.
      }

      # The admin keys, from the Nomad Variable nomad/jobs/qufop-builder
      # (items access_key and secret_key; see jobspecs/README.md), reach the
      # builder as QUFOP_ACCESS_KEY and QUFOP_SECRET_KEY in its environment:
      # never in args or job variables, which anyone who can read the job
      # sees. The file is in secrets/, private to the task. Without the
      # variable the file is empty and the builder generates keys once into
      # its data folder (admin.json, mode 0600); its log gives the access
      # key and the file, never the secret. nomadVarList does not wait for a
      # variable that does not exist (nomadVar would block the task), and
      # sees one put later: the task then restarts with the keys.
      template {
        destination = "secrets/admin-keys.env"
        perms       = "0600"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{- range nomadVarList "nomad/jobs/qufop-builder" -}}
        {{- if eq .Path "nomad/jobs/qufop-builder" -}}
        {{- with nomadVar .Path }}
        QUFOP_ACCESS_KEY={{ .access_key }}
        QUFOP_SECRET_KEY={{ .secret_key }}
        {{- end -}}
        {{- end -}}
        {{- end }}
        EOT
      }

      config {
        image      = var.image
        force_pull = false
        # Host networking: the node's Nomad and Consul agents and the registry
        # are reached at the node's addresses, as the CLI reaches the API.
        network_mode = "host"
        # The node's Docker daemon builds and pushes the images
        # (DOCKER_HOST defaults to this socket).
        volumes = ["/var/run/docker.sock:/var/run/docker.sock"]
        # The image's entrypoint is qufop: args are its arguments.
        args = concat(
          [
            "builder",
            "--listen", "$${NOMAD_ADDR_http}",
            "--data", "/alloc/data",
            "--registry", var.registry,
          ],
          var.ufop_network != "" ? ["--ufop-network", var.ufop_network] : [],
        )
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
