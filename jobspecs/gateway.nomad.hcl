# qufop gateway: the data plane (processing URLs, built-in commands, UFOP
# dispatch, pfop, /metrics) on every Nomad client.
#
# A system job: one gateway per client node, so a request that lands on a node
# is fetched from that node's bucket folder and computed there; UFOP steps go to
# the healthy instances Consul knows of (same node first). Put a load balancer
# or DNS round robin in front of the nodes' port var.port.
#
#   nomad job run jobspecs/gateway.nomad.hcl
#   nomad job run -var 'image=qufop/qufop:v0.4.0' -var 'buckets=["demo","photos"]' jobspecs/gateway.nomad.hcl
#
# Needs on each client (nodes without them are skipped, not failed):
#   - the Docker driver, with the image var.image present locally (force_pull
#     is off: the platform's own images are made locally, see jobspecs/README.md);
#   - a host volume named var.bucket_volume (client config:
#     host_volume "qufop-buckets" { path = "/srv/qufop/buckets" }) holding one
#     folder per bucket;
#   - a Consul agent on the node (CONSUL_HTTP_ADDR below).

variable "datacenters" {
  description = "Datacenters the gateway runs in (\"*\": all)."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "qufop image, present on every client (a tag other than latest: Nomad would try to pull latest)."
  type        = string
  default     = "qufop/qufop:dev"
}

variable "port" {
  description = "Static port the gateway listens on, on every node (what the load balancer targets)."
  type        = number
  default     = 8080
}

variable "buckets" {
  description = "Buckets served: bucket NAME is folder NAME of the host volume."
  type        = list(string)
  default     = ["demo"]
}

variable "bucket_volume" {
  description = "Client host volume holding one folder per bucket."
  type        = string
  default     = "qufop-buckets"
}

variable "owner" {
  description = "User who owns the buckets served (a private UFOP serves only its owner)."
  type        = string
  default     = "admin"
}

variable "consul_addr" {
  # $${...} is a literal ${...}: Nomad fills in the node's address when it
  # starts the task, so each gateway talks to the Consul agent on its own node.
  description = "Consul HTTP address as seen from the task (CONSUL_HTTP_ADDR)."
  type        = string
  default     = "http://$${attr.unique.network.ip-address}:8500"
}

variable "workers" {
  # The gateway's own default is the node's core count, which inside the
  # container is every core of the node, not the share reserved below.
  description = "Built-in steps run at once per gateway (0: the gateway's default, the node's core count)."
  type        = number
  default     = 0
}

variable "timeout" {
  description = "Deadline of one processing request (--timeout)."
  type        = string
  default     = "30s"
}

variable "cpu" {
  description = "CPU reserved per gateway, MHz."
  type        = number
  default     = 1000
}

variable "memory" {
  description = "Memory reserved per gateway, MB (libvips decodes in memory)."
  type        = number
  default     = 512
}

variable "memory_max" {
  description = "Memory limit per gateway, MB (oversubscription, where the scheduler allows it; otherwise ignored)."
  type        = number
  default     = 1024
}

variable "kill_timeout" {
  # In-flight requests finish before the gateway exits on SIGTERM; they last
  # at most var.timeout. The client caps this at its max_kill_timeout (30s by
  # default): raise that cap before raising this past 30s.
  description = "Time between SIGTERM and SIGKILL."
  type        = string
  default     = "30s"
}

variable "shutdown_delay" {
  # Consul deregistration first, then this wait, then SIGTERM: load
  # balancers and other gateways stop sending requests before the drain.
  description = "Wait between deregistration and SIGTERM."
  type        = string
  default     = "5s"
}

job "qufop-gateway" {
  datacenters = var.datacenters
  type        = "system"

  # One node at a time, so an upgrade never takes every gateway down at once.
  update {
    max_parallel = 1
    stagger      = "10s"
  }

  group "gateway" {
    network {
      port "http" {
        static = var.port
      }
    }

    # Scheduling needs this volume on the node: only nodes that hold the
    # buckets run a gateway.
    volume "buckets" {
      type      = "host"
      source    = var.bucket_volume
      read_only = false # saveas and pfop results are written to buckets
    }

    service {
      provider = "consul"
      name     = "qufop-gateway"
      port     = "http"
      tags     = ["qufop", "gateway"]

      check {
        name     = "http-alive"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # A crashed gateway comes back on the same node (a system job has one
    # allocation per node and is not rescheduled elsewhere).
    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "gateway" {
      driver         = "docker"
      kill_signal    = "SIGTERM" # the gateway drains on SIGTERM (Nomad's default is SIGINT)
      kill_timeout   = var.kill_timeout
      shutdown_delay = var.shutdown_delay

      volume_mount {
        volume      = "buckets"
        destination = "/buckets"
      }

      env {
        # Read by consulapi.DefaultConfig(); CONSUL_HTTP_TOKEN, when ACLs are
        # on, belongs in a template from Nomad Variables, not in this file.
        CONSUL_HTTP_ADDR = var.consul_addr
      }

      config {
        image      = var.image
        force_pull = false
        # Host networking: the gateway reaches the node's Consul agent and UFOP
        # instances (registered with the node's address) directly, and UFOP
        # instances fetch /uop inputs from the advertised node address.
        network_mode = "host"
        # The image's entrypoint is qufop: args are its arguments.
        args = concat(
          [
            "gateway",
            "--listen", "$${NOMAD_ADDR_http}",
            "--advertise-addr", "$${NOMAD_ADDR_http}",
            "--owner", var.owner,
            "--timeout", var.timeout,
          ],
          # "${...}", not tostring(): Nomad 1.6's HCL2 has no tostring, and
          # the call failed the parse as soon as workers was set.
          var.workers > 0 ? ["--workers", "${var.workers}"] : [],
          flatten([for b in var.buckets : ["--bucket", "${b}=/buckets/${b}"]]),
        )
      }

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max
      }
    }
  }
}
