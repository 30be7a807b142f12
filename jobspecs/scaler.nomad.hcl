# qufop scaler: every UFOP with a scale policy (qufop scale-policy) follows its
# queue. It reads the gateways' figures from Prometheus (var.prometheus) or,
# without one, from every gateway's /metrics (Consul service qufop-gateway),
# sets the count of each UFOP's Nomad job and records every change in the
# UFOP's record in Consul KV.
#
#   nomad job run jobspecs/scaler.nomad.hcl
#   nomad job run -var 'prometheus=http://10.0.0.7:9090' jobspecs/scaler.nomad.hcl
#
# Two instances (var.count): they compete for a Consul lock (the KV key
# var.lock_key held with a session tied to a TTL check that each registers on
# its node's Consul agent, service qufop-lock) and only the holder decides;
# /health says which one leads ("leader": true). When the leader stops (an
# update, a drain, `nomad alloc stop`) it releases the lock and the other
# takes over at once; when it dies without releasing (a crash, its node
# lost), its check goes critical var.lock_ttl/2 after its last update, Consul
# invalidates its session then, and the other takes over after a lock delay
# of 2/5 var.lock_ttl: within var.lock_ttl. Nomad's scheduler places the two
# on different nodes when it can (it scores allocations of one job on one node
# down), on the same one otherwise: the port is dynamic.
#
# Needs on its clients: the Docker driver with the image var.image present
# locally (force_pull is off), and Nomad and Consul agents on the node (the
# addresses below). No admin keys: the scaler does not call the management
# API, it reads and writes Consul KV and scales Nomad jobs. With ACLs on it
# needs NOMAD_TOKEN (scale the ufop-* jobs: submit-job, or scale-job, in their
# namespace) and CONSUL_HTTP_TOKEN (key qufop/ read-write, sessions, service
# qufop-lock write for the lock's check): a
# template from Nomad Variables, as for the builder (jobspecs/README.md).

variable "datacenters" {
  description = "Datacenters the scaler may run in (\"*\": all)."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "qufop image, present on the clients (a tag other than latest: Nomad would try to pull latest)."
  type        = string
  default     = "qufop/qufop:dev"
}

variable "count" {
  description = "Scalers running; one leads (the Consul lock), the others wait to take over."
  type        = number
  default     = 2
}

variable "nomad_addr" {
  # $${...} is a literal ${...}: Nomad fills in the node's address when it
  # starts the task; the local client agent forwards API calls to the servers.
  description = "Nomad HTTP address as seen from the task (--nomad-addr)."
  type        = string
  default     = "http://$${attr.unique.network.ip-address}:4646"
}

variable "nomad_namespace" {
  description = "Namespace of the ufop-<name> jobs (NOMAD_NAMESPACE): the builder's."
  type        = string
  default     = "default"
}

variable "consul_addr" {
  description = "Consul HTTP address as seen from the task (--consul-addr)."
  type        = string
  default     = "http://$${attr.unique.network.ip-address}:8500"
}

variable "prometheus" {
  description = "URL of the Prometheus that scrapes the gateways (--prometheus; empty: scrape every gateway's /metrics directly)."
  type        = string
  default     = ""
}

variable "prometheus_match" {
  description = "Label matchers that select the gateways' series in Prometheus, e.g. job=\"qufop-gateway\" (--prometheus-match; empty: all series)."
  type        = string
  default     = ""
}

variable "lock_key" {
  description = "Consul KV key of the lock the scalers compete for (--lock-key)."
  type        = string
  default     = "qufop/scaler/lock"
}

variable "lock_ttl" {
  # 2s to 24h. A dead leader is replaced within it (its check runs out after
  # half of it, then a lock delay of 2/5); a stopped leader at once.
  description = "How soon a dead scaler is replaced (--lock-ttl)."
  type        = string
  default     = "10s"
}

variable "ufop_network" {
  description = "Docker network the UFOP jobs run on (made on every client: see Isolation in jobspecs/README.md). Empty: Docker's default bridge, which does not isolate instances."
  type        = string
  default     = ""
}

variable "cpu" {
  description = "CPU reserved per scaler, MHz."
  type        = number
  default     = 200
}

variable "memory" {
  description = "Memory reserved per scaler, MB."
  type        = number
  default     = 128
}

job "qufop-scaler" {
  datacenters = var.datacenters
  type        = "service"

  # One at a time: the other keeps (or takes) the lock meanwhile.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "5s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "scaler" {
    count = var.count

    network {
      # Dynamic: two scalers may share a node.
      port "http" {}
    }

    ephemeral_disk {
      size = 64 # MB: the logs below, nothing else is written
    }

    service {
      provider = "consul"
      name     = "qufop-scaler"
      port     = "http"
      tags     = ["qufop", "scaler"]

      # /health answers 200 on every scaler, leading or waiting; /metrics
      # (for Prometheus) has qufop_scaler_leader.
      check {
        name     = "http-alive"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "scaler" {
      driver = "docker"
      # SIGTERM: the scaler stops deciding, releases the lock (the other
      # scaler takes it at once) and ends its session, within seconds.
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      env {
        # Read by nomadapi.DefaultConfig(). NOMAD_TOKEN and CONSUL_HTTP_TOKEN,
        # when ACLs are on, belong in a template from Nomad Variables (see
        # jobspecs/README.md), not here.
        NOMAD_NAMESPACE = var.nomad_namespace
      }

      config {
        image      = var.image
        force_pull = false
        # Host networking: the node's Nomad and Consul agents and the gateways
        # are reached at the node's addresses.
        network_mode = "host"
        # The image's entrypoint is qufop: args are its arguments.
        args = concat(
          [
            "scaler",
            "--listen", "$${NOMAD_ADDR_http}",
            "--nomad-addr", var.nomad_addr,
            "--consul-addr", var.consul_addr,
            "--lock-key", var.lock_key,
            "--lock-ttl", var.lock_ttl,
          ],
          var.prometheus != "" ? ["--prometheus", var.prometheus] : [],
          var.prometheus_match != "" ? ["--prometheus-match", var.prometheus_match] : [],
          var.ufop_network != "" ? ["--ufop-network", var.ufop_network] : [],
        )
      }

      logs {
        max_files     = 3
        max_file_size = 10 # MB
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
