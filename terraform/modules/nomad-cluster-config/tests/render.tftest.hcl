# `tofu test` (OpenTofu >= 1.6) in the module's folder. Plan-only runs: the
# module has no provider and no resource, so every output is known at plan.

variables {
  server_count     = 3
  retry_join       = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
  datacenter       = "qufop-dc1"
  region           = "eu"
  registry_address = "10.0.0.5:5000"
  bucket_folders = {
    demo   = "/srv/qufop/buckets/demo"
    photos = "/data/photos"
  }
  node_pools = { infra = "registry and builder" }
  client_classes = {
    gateway = { count = 2, registry = false, meta = { "qufop.role" = "gateway" } }
    infra   = { count = 1, buckets = false, node_pool = "infra" }
  }
  consul_gossip_key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
  nomad_gossip_key  = "hWO2s8GF5zHGAYBXcWJVozDoKtnWEyRKkmD/4mEJO1I="
}

run "three_servers_two_clients" {
  command = plan

  assert {
    condition     = can(regex("(?m)^\\s*bootstrap_expect\\s*=\\s*3$", output.server.nomad_hcl))
    error_message = "Nomad servers must expect 3 servers."
  }
  assert {
    condition     = can(regex("(?m)^bootstrap_expect\\s*=\\s*3$", output.server.consul_hcl))
    error_message = "Consul servers must expect 3 servers."
  }
  assert {
    condition     = can(regex("(?m)^\\s*enabled\\s*=\\s*true$", regex("server \\{[^}]*", output.server.nomad_hcl)))
    error_message = "The server role must enable Nomad's server."
  }
  assert {
    condition     = !strcontains(output.server.nomad_hcl, "client {") && output.server.docker_daemon_json == null
    error_message = "Servers run no client and no Docker."
  }
  assert {
    condition     = strcontains(output.server.nomad_hcl, "retry_join = [\"10.0.0.1:4648\",\"10.0.0.2:4648\",\"10.0.0.3:4648\"]")
    error_message = "Nomad servers join one another on the serf port 4648."
  }
  assert {
    condition     = strcontains(output.clients.gateway.nomad_hcl, "retry_join = [\"10.0.0.1:4647\",\"10.0.0.2:4647\",\"10.0.0.3:4647\"]")
    error_message = "Nomad clients join the servers on the RPC port 4647."
  }
  assert {
    condition = alltrue([for h in [output.server.consul_hcl, output.clients.gateway.consul_hcl, output.clients.infra.consul_hcl] :
      strcontains(h, "retry_join = [\"10.0.0.1:8301\",\"10.0.0.2:8301\",\"10.0.0.3:8301\"]")
    ])
    error_message = "Every Consul agent joins the servers on the serf LAN port 8301."
  }
  assert {
    condition     = can(regex("(?m)^server\\s*=\\s*true$", output.server.consul_hcl)) && can(regex("(?m)^server\\s*=\\s*false$", output.clients.gateway.consul_hcl))
    error_message = "Consul runs as a server on servers only."
  }
  assert {
    condition     = !strcontains(output.server.nomad_hcl, "name       =") && !strcontains(output.server.consul_hcl, "node_name")
    error_message = "Without node_name the agents take the host name."
  }
  assert {
    condition     = !strcontains(output.clients.gateway.consul_hcl, "bootstrap_expect")
    error_message = "A Consul client must not have bootstrap_expect."
  }
  assert {
    condition = alltrue([for h in [output.server.nomad_hcl, output.clients.gateway.nomad_hcl] :
      strcontains(h, "region     = \"eu\"") && strcontains(h, "datacenter = \"qufop-dc1\"")
    ]) && strcontains(output.server.consul_hcl, "datacenter  = \"qufop-dc1\"")
    error_message = "Region and datacenter must reach the agents."
  }
  assert {
    condition     = length(output.clients) == 2 && output.clients.gateway.count == 2 && output.clients.infra.count == 1
    error_message = "One entry per client class, with its count."
  }
  assert {
    condition     = strcontains(output.clients.gateway.nomad_hcl, "node_class = \"gateway\"") && strcontains(output.clients.infra.nomad_hcl, "node_class = \"infra\"")
    error_message = "Each client class is the node_class of its clients."
  }
  assert {
    condition     = strcontains(output.clients.gateway.nomad_hcl, "node_pool  = \"default\"") && strcontains(output.clients.infra.nomad_hcl, "node_pool  = \"infra\"")
    error_message = "Each client class puts its clients in its node pool."
  }
  assert {
    condition     = strcontains(output.clients.gateway.nomad_hcl, "\"qufop.role\" = \"gateway\"")
    error_message = "A class's meta reaches its clients' meta block."
  }
  assert {
    condition     = strcontains(output.node_pool_specs.infra, "node_pool \"infra\" {") && strcontains(output.node_pool_specs.infra, "description = \"registry and builder\"")
    error_message = "Each node pool has its spec for nomad node pool apply."
  }

  # Host volumes: the bucket volume and one per bucket on the gateway
  # class, the registry's on the infra class, each only where asked for.
  assert {
    condition = output.clients.gateway.host_volumes == tomap({
      "qufop-buckets"       = "/srv/qufop/buckets"
      "qufop-bucket-demo"   = "/srv/qufop/buckets/demo"
      "qufop-bucket-photos" = "/data/photos"
    })
    error_message = "The gateway class has qufop-buckets and a host volume per bucket, and not qufop-registry."
  }
  assert {
    condition     = output.clients.infra.host_volumes == tomap({ "qufop-registry" = "/srv/qufop/registry" })
    error_message = "The infra class has qufop-registry only."
  }
  assert {
    condition = alltrue([for name, path in output.clients.gateway.host_volumes :
      can(regex("host_volume \"${name}\" \\{\\s*path\\s*=\\s*\"${path}\"", output.clients.gateway.nomad_hcl))
    ]) && length(regexall("host_volume \"", output.clients.gateway.nomad_hcl)) == 3
    error_message = "Every host volume of the gateway class is a host_volume block of its Nomad client, with its path."
  }
  assert {
    condition     = can(regex("host_volume \"qufop-registry\" \\{\\s*path\\s*=\\s*\"/srv/qufop/registry\"", output.clients.infra.nomad_hcl)) && !strcontains(output.clients.infra.nomad_hcl, "qufop-buckets")
    error_message = "The infra class's Nomad client has the qufop-registry host volume and no bucket volume."
  }
  assert {
    condition     = can(regex("volumes \\{\\s*enabled\\s*=\\s*true", output.clients.gateway.nomad_hcl))
    error_message = "The docker plugin allows volumes (the builder binds the Docker socket)."
  }

  # Docker: the registry is listed as insecure (no TLS).
  assert {
    condition     = jsondecode(output.clients.gateway.docker_daemon_json)["insecure-registries"] == ["10.0.0.5:5000"]
    error_message = "Without registry_tls, registry_address is Docker's one insecure registry."
  }

  # Switches off by default.
  assert {
    condition     = !strcontains(output.server.nomad_hcl, "tls {") && !strcontains(output.server.consul_hcl, "tls {") && strcontains(output.server.nomad_hcl, "address = \"127.0.0.1:8500\"")
    error_message = "TLS is off by default: no tls block, Nomad reaches Consul over plain HTTP on 8500."
  }
  assert {
    condition     = can(regex("acl \\{\\s*enabled\\s*=\\s*false", output.server.nomad_hcl)) && can(regex("acl \\{\\s*enabled\\s*=\\s*false\\s*default_policy\\s*=\\s*\"allow\"", output.server.consul_hcl))
    error_message = "ACLs are off by default."
  }

  # Gossip keys stay out of the plain outputs.
  assert {
    condition = alltrue([for h in concat([output.server.nomad_hcl, output.server.consul_hcl], [for c in values(output.clients) : c.consul_hcl]) :
      !strcontains(h, "encrypt") && !strcontains(h, "pUqJrVyVRj5jsiYEkM") && !strcontains(h, "hWO2s8GF5zHGAYBXcWJVozDoKtnWEyRKkmD")
    ])
    error_message = "The agents' main files must not hold the gossip keys."
  }
  assert {
    condition     = output.gossip.nomad_hcl == "server {\n  encrypt = \"hWO2s8GF5zHGAYBXcWJVozDoKtnWEyRKkmD/4mEJO1I=\"\n}\n" && output.gossip.consul_hcl == "encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"\n"
    error_message = "The gossip files hold the keys passed in."
  }

  # systemd units.
  assert {
    condition     = strcontains(output.server.nomad_service, "ExecStart=/usr/bin/nomad agent -config /etc/nomad.d\n") && strcontains(output.server.consul_service, "ExecStart=/usr/bin/consul agent -config-dir=/etc/consul.d\n")
    error_message = "The units start the agents of the apt packages on the config folders."
  }
  assert {
    condition     = strcontains(output.clients.gateway.nomad_service, "After=network-online.target consul.service docker.service\n") && !strcontains(output.server.nomad_service, "docker.service")
    error_message = "Nomad clients start after Docker; servers do not wait for it."
  }
}

run "cloud_init" {
  command = plan

  # yamldecode fails the assertion (and the run) if the document is not YAML.
  assert {
    condition     = startswith(output.server_cloud_init, "#cloud-config\n") && alltrue([for d in values(output.client_cloud_init) : startswith(d, "#cloud-config\n")])
    error_message = "cloud-init documents start with #cloud-config."
  }
  assert {
    condition = { for f in yamldecode(output.server_cloud_init).write_files : f.path => f.content } == {
      "/etc/nomad.d/nomad.hcl"             = output.server.nomad_hcl
      "/etc/consul.d/consul.hcl"           = output.server.consul_hcl
      "/etc/systemd/system/nomad.service"  = output.server.nomad_service
      "/etc/systemd/system/consul.service" = output.server.consul_service
      "/etc/nomad.d/gossip.hcl"            = output.gossip.nomad_hcl
      "/etc/consul.d/gossip.hcl"           = output.gossip.consul_hcl
    }
    error_message = "A server's cloud-init writes exactly the server files and both gossip files."
  }
  assert {
    condition = { for f in yamldecode(output.client_cloud_init.gateway).write_files : f.path => f.content } == {
      "/etc/nomad.d/nomad.hcl"             = output.clients.gateway.nomad_hcl
      "/etc/consul.d/consul.hcl"           = output.clients.gateway.consul_hcl
      "/etc/docker/daemon.json"            = output.clients.gateway.docker_daemon_json
      "/etc/systemd/system/nomad.service"  = output.clients.gateway.nomad_service
      "/etc/systemd/system/consul.service" = output.clients.gateway.consul_service
      "/etc/consul.d/gossip.hcl"           = output.gossip.consul_hcl
    }
    error_message = "A client's cloud-init writes its class's files and Consul's gossip file, never Nomad's server key."
  }
  assert {
    condition = alltrue([for f in yamldecode(output.server_cloud_init).write_files :
      f.permissions == (strcontains(f.path, "gossip") ? (startswith(f.path, "/etc/nomad.d") ? "0600" : "0640") : (startswith(f.path, "/etc/consul.d") ? "0640" : "0644"))
    ])
    error_message = "Gossip and Consul files are not world-readable; the rest are 0644."
  }
  assert {
    condition     = contains(yamldecode(output.server_cloud_init).runcmd, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold nomad=1.6.5-1 consul=1.16.3-1")
    error_message = "Servers install the pinned Nomad and Consul from HashiCorp's apt repository."
  }
  assert {
    condition     = yamldecode(output.server_cloud_init).runcmd[length(yamldecode(output.server_cloud_init).runcmd) - 1] == "systemctl enable --now consul.service nomad.service"
    error_message = "cloud-init ends by starting Consul and Nomad."
  }
  assert {
    condition     = !anytrue([for c in yamldecode(output.server_cloud_init).runcmd : strcontains(c, "docker")])
    error_message = "Servers get no Docker."
  }
  assert {
    condition = alltrue([for c in [
      "install -d -m 0755 -o 10001 -g 10001 /srv/qufop/buckets/demo",
      "install -d -m 0755 -o 10001 -g 10001 /data/photos",
      "grep -qs ' /srv/qufop/buckets/photos ' /etc/fstab || echo '/data/photos /srv/qufop/buckets/photos none bind 0 0' >> /etc/fstab",
      "mountpoint -q /srv/qufop/buckets/photos || mount /srv/qufop/buckets/photos",
      "chown 10001:10001 /srv/qufop/buckets",
    ] : contains(yamldecode(output.client_cloud_init.gateway).runcmd, c)])
    error_message = "Gateway clients make the bucket folders for uid 10001 and bind a bucket kept elsewhere into qufop-buckets."
  }
  assert {
    condition     = !anytrue([for c in yamldecode(output.client_cloud_init.infra).runcmd : strcontains(c, "10001")]) && contains(yamldecode(output.client_cloud_init.infra).runcmd, "install -d -m 0755 /srv/qufop/registry")
    error_message = "Registry-only clients make the registry folder and no bucket folder."
  }
  assert {
    condition     = index(yamldecode(output.client_cloud_init.gateway).runcmd, "systemctl enable --now consul.service nomad.service") > index(yamldecode(output.client_cloud_init.gateway).runcmd, "systemctl restart docker.service")
    error_message = "Clients start Nomad after Docker has its daemon.json."
  }
}

run "no_gossip_keys" {
  command = plan

  variables {
    consul_gossip_key = null
    nomad_gossip_key  = null
  }

  assert {
    condition     = output.gossip.nomad_hcl == null && output.gossip.consul_hcl == null
    error_message = "Without keys there are no gossip files."
  }
  assert {
    condition     = !anytrue([for f in yamldecode(output.server_cloud_init).write_files : strcontains(f.path, "gossip")])
    error_message = "Without keys cloud-init writes no gossip file."
  }
}

run "five_servers_auto_join" {
  command = plan

  variables {
    server_count = 5
    retry_join   = ["provider=aws tag_key=role tag_value=qufop-server"]
  }

  assert {
    condition     = can(regex("(?m)^\\s*bootstrap_expect\\s*=\\s*5$", output.server.nomad_hcl)) && can(regex("(?m)^bootstrap_expect\\s*=\\s*5$", output.server.consul_hcl))
    error_message = "Five servers expect five."
  }
  assert {
    condition     = strcontains(output.server.consul_hcl, "retry_join = [\"provider=aws tag_key=role tag_value=qufop-server\"]") && strcontains(output.clients.gateway.nomad_hcl, "retry_join = [\"provider=aws tag_key=role tag_value=qufop-server\"]")
    error_message = "A cloud auto-join string is passed as it is, without a port."
  }
}

run "releases_install" {
  command = plan

  variables {
    install_from   = "releases"
    releases_url   = "http://mirror.example/hashicorp"
    nomad_version  = "1.6.4"
    consul_version = "1.16.2"
  }

  assert {
    condition     = contains(yamldecode(output.server_cloud_init).runcmd, "curl -fsSL -o /tmp/nomad.zip http://mirror.example/hashicorp/nomad/1.6.4/nomad_1.6.4_linux_amd64.zip && unzip -o -d /usr/local/bin /tmp/nomad.zip nomad && rm /tmp/nomad.zip")
    error_message = "Nomad comes from releases_url at nomad_version into /usr/local/bin."
  }
  assert {
    condition     = strcontains(output.server.consul_service, "ExecStart=/usr/local/bin/consul agent") && strcontains(output.server.nomad_service, "ExecStart=/usr/local/bin/nomad agent")
    error_message = "The units start the binaries where the archives put them."
  }
  assert {
    condition     = !anytrue([for c in yamldecode(output.server_cloud_init).runcmd : strcontains(c, "apt.releases.hashicorp.com")])
    error_message = "No apt repository with install_from = releases."
  }
}

run "single_host_overrides" {
  command = plan

  variables {
    retry_join         = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    bind_addr          = "127.0.0.1"
    consul_client_addr = "127.0.0.2"
    consul_agent_addr  = "127.0.0.2"
    node_name          = "server-2"
    ports              = { nomad_http = 14646, consul_http = 18500, consul_serf_lan = 18301, nomad_rpc = 14647 }
    paths              = { nomad_data = "/tmp/t/nomad", consul_data = "/tmp/t/consul" }
  }

  assert {
    condition     = strcontains(output.server.consul_hcl, "retry_join = [\"127.0.0.1:18301\",\"127.0.0.2:18301\",\"127.0.0.3:18301\"]") && strcontains(output.clients.gateway.nomad_hcl, "retry_join = [\"127.0.0.1:14647\",\"127.0.0.2:14647\",\"127.0.0.3:14647\"]")
    error_message = "Overridden ports reach the join addresses."
  }
  assert {
    condition     = strcontains(output.server.nomad_hcl, "http = 14646") && strcontains(output.server.nomad_hcl, "serf = 4648") && strcontains(output.server.nomad_hcl, "address = \"127.0.0.2:18500\"")
    error_message = "Overridden ports reach Nomad, the others keep their defaults, and Nomad finds Consul on its HTTP port."
  }
  assert {
    condition     = strcontains(output.server.nomad_hcl, "data_dir   = \"/tmp/t/nomad\"") && strcontains(output.server.consul_hcl, "data_dir    = \"/tmp/t/consul\"") && strcontains(output.server.consul_hcl, "client_addr = \"127.0.0.2\"")
    error_message = "Overridden paths and addresses reach the agents."
  }
  assert {
    condition     = strcontains(output.server.nomad_hcl, "\nname       = \"server-2\"\n") && strcontains(output.clients.gateway.consul_hcl, "\nnode_name   = \"server-2\"\n")
    error_message = "node_name names both agents."
  }
  assert {
    condition     = can(regex("ports \\{\\s*http\\s*=\\s*18500\\s*https\\s*=\\s*-1\\s*grpc\\s*=\\s*8502\\s*dns\\s*=\\s*8600\\s*server\\s*=\\s*8300\\s*serf_lan\\s*=\\s*18301\\s*serf_wan\\s*=\\s*8302\\s*\\}", output.clients.gateway.consul_hcl))
    error_message = "Consul listens on the ports given, each on its own line of the ports block (serf_lan where the others join)."
  }
  assert {
    condition     = can(regex("ports \\{\\s*http\\s*=\\s*14646\\s*rpc\\s*=\\s*14647\\s*serf\\s*=\\s*4648\\s*\\}", output.server.nomad_hcl))
    error_message = "Nomad listens on the ports given (rpc where clients join, serf where servers join)."
  }
  assert {
    condition     = can(regex("(?m)^advertise \\{\\s*http\\s*=\\s*\"127.0.0.1\"\\s*rpc\\s*=\\s*\"127.0.0.1\"\\s*serf\\s*=\\s*\"127.0.0.1\"", output.clients.gateway.nomad_hcl)) && strcontains(output.server.consul_hcl, "advertise_addr = \"127.0.0.1\"")
    error_message = "The agents advertise bind_addr when advertise_addr is null (Nomad refuses to default to loopback)."
  }
}
