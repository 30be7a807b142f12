# Docker registry for UFOP images: the builder pushes <registry>/<owner>/<name>:v<N>,
# every Nomad client's Docker pulls it when it places a UFOP instance.
# (The scaler's jobspec comes with the scaler.)
#
#   nomad job run jobspecs/registry.nomad.hcl
#   nomad job run -var 'image=registry:2.8.3' -var 'entrypoint=["registry","serve"]' jobspecs/registry.nomad.hcl
#
# Needs on its client:
#   - the Docker driver, with var.image present locally (force_pull is off);
#   - a host volume named var.storage_volume for the blobs (client config:
#     host_volume "qufop-registry" { path = "/srv/qufop/registry" }): images
#     outlive the allocation, and the registry stays on the node(s) holding
#     the volume. Define it on one node so that the registry's address (baked
#     into image names) does not move.
#
# Plain HTTP, no auth, like .ci/registry.yml: keep it on a private network.
# Docker daemons pull plain HTTP only from 127.0.0.0/8 or from registries
# listed in their "insecure-registries"; put TLS (http.tls in the config
# below) in front for anything else.

variable "datacenters" {
  description = "Datacenters the registry may run in (\"*\": all)."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  # Debian's docker-registry in a locally made image (jobspecs/README.md), or
  # the upstream image (registry:2.8.3) with entrypoint ["registry", "serve"].
  description = "Registry image, present on the client (a tag other than latest)."
  type        = string
  default     = "local/docker-registry:2.8"
}

variable "entrypoint" {
  description = "Registry program and its serve verb inside the image; the config file is appended."
  type        = list(string)
  default     = ["/usr/bin/docker-registry", "serve"]
}

variable "port" {
  # Static: the address is baked into every UFOP image name
  # (<registry>/<owner>/<name>:v<N>) and must not move.
  description = "Port the registry listens on, on its node."
  type        = number
  default     = 5000
}

variable "storage_volume" {
  description = "Client host volume holding the registry's blobs."
  type        = string
  default     = "qufop-registry"
}

job "qufop-registry" {
  datacenters = var.datacenters
  type        = "service"

  # No constraint on Docker: the task's driver already keeps the job off
  # nodes without a healthy Docker driver (whose attribute driver.docker is
  # "1" there, not "true": a constraint on "true" matched no node). The
  # host volume below picks the node.

  group "registry" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    volume "storage" {
      type      = "host"
      source    = var.storage_volume
      read_only = false
    }

    service {
      provider = "consul"
      name     = "qufop-registry"
      port     = "http"
      tags     = ["qufop", "registry"]

      check {
        name     = "v2-api"
        type     = "http"
        path     = "/v2/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "registry" {
      driver         = "docker"
      kill_signal    = "SIGTERM"
      kill_timeout   = "20s" # lets an upload in progress finish
      shutdown_delay = "2s"

      volume_mount {
        volume      = "storage"
        destination = "/var/lib/registry"
      }

      # The project's config (as .ci/registry.yml, but listening on the
      # node and storing in the host volume): the packaged one asks for
      # htpasswd auth.
      template {
        destination = "local/config.yml"
        change_mode = "restart"
        data        = <<-EOF
          version: 0.1
          log:
            level: info
          storage:
            filesystem:
              rootdirectory: /var/lib/registry
            delete:
              enabled: true
          http:
            addr: :{{ env "NOMAD_PORT_http" }}
          health:
            storagedriver:
              enabled: true
              interval: 10s
              threshold: 3
          EOF
      }

      config {
        image        = var.image
        force_pull   = false
        # Host networking, listening on every address of the node: the node's
        # own Docker reaches it at 127.0.0.1:<port>, the other nodes at
        # <node address>:<port>.
        network_mode = "host"
        entrypoint   = var.entrypoint
        args         = ["/local/config.yml"]
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
