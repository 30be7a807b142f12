# Renders the configuration of qufop's Nomad + Consul machines: for the
# server role and for each client class, the agents' HCL, Docker's
# daemon.json, the systemd units and a cloud-init document that installs
# and starts them. No provider, no resource: everything is a local.

locals {
  ports = var.ports
  paths = var.paths
  tls = {
    enabled   = var.tls.enabled
    ca_file   = var.tls.enabled ? var.tls.ca_file : ""
    cert_file = var.tls.enabled ? var.tls.cert_file : ""
    key_file  = var.tls.enabled ? var.tls.key_file : ""
  }

  # Plain addresses get each agent's port; cloud auto-join strings are
  # passed as they are (the agents find the port themselves).
  auto_join           = [for a in var.retry_join : a if startswith(a, "provider=")]
  server_addresses    = [for a in var.retry_join : a if !startswith(a, "provider=")]
  consul_retry_join   = [for a in var.retry_join : startswith(a, "provider=") ? a : "${a}:${local.ports.consul_serf_lan}"]
  nomad_server_join   = [for a in var.retry_join : startswith(a, "provider=") ? a : "${a}:${local.ports.nomad_serf}"]
  nomad_client_join   = [for a in var.retry_join : startswith(a, "provider=") ? a : "${a}:${local.ports.nomad_rpc}"]
  bin_dir             = var.install_from == "apt" ? "/usr/bin" : "/usr/local/bin"
  insecure_registries = var.registry_address != null && !var.registry_tls ? [var.registry_address] : []

  # Host volumes of a client class: qufop-buckets with one folder per
  # bucket and a volume per bucket where it serves buckets, qufop-registry
  # where it keeps the registry.
  bucket_volumes = { for name, path in var.bucket_folders : "qufop-bucket-${name}" => path }
  class_volumes = { for class, c in var.client_classes : class => merge(
    c.buckets ? merge({ "qufop-buckets" = var.buckets_path }, local.bucket_volumes) : {},
    c.registry ? { "qufop-registry" = var.registry_path } : {},
  ) }
  # Buckets whose folder is not <buckets_path>/<name>: bind-mounted there.
  bucket_binds = { for name, path in var.bucket_folders : "${var.buckets_path}/${name}" => path if path != "${var.buckets_path}/${name}" }

  common = {
    region       = var.region
    datacenter   = var.datacenter
    bind_addr    = var.bind_addr
    advertise    = coalesce(var.advertise_addr, var.bind_addr)
    ports        = local.ports
    tls          = local.tls
    acl_enabled  = var.acl_enabled
    server_count = var.server_count
    # Nomad's address of its node's Consul agent.
    consul_agent_addr = var.consul_agent_addr
    node_name         = var.node_name
  }

  server = {
    nomad_hcl = templatefile("${path.module}/templates/nomad.hcl.tftpl", merge(local.common, {
      role           = "server"
      data_dir       = local.paths.nomad_data
      server_join    = local.nomad_server_join
      node_class     = ""
      node_pool      = ""
      host_volumes   = {}
      meta           = {}
      docker_volumes = false
    }))
    consul_hcl = templatefile("${path.module}/templates/consul.hcl.tftpl", merge(local.common, {
      role        = "server"
      data_dir    = local.paths.consul_data
      client_addr = var.consul_client_addr
      retry_join  = local.consul_retry_join
    }))
    # Servers run no jobs: no Docker there.
    docker_daemon_json = null
    nomad_service = templatefile("${path.module}/templates/nomad.service.tftpl", {
      role = "server", bin_dir = local.bin_dir, config_dir = local.paths.nomad_config
    })
    consul_service = templatefile("${path.module}/templates/consul.service.tftpl", {
      role = "server", bin_dir = local.bin_dir, config_dir = local.paths.consul_config
    })
    host_volumes = {}
  }

  clients = { for class, c in var.client_classes : class => {
    count     = c.count
    node_pool = c.node_pool
    nomad_hcl = templatefile("${path.module}/templates/nomad.hcl.tftpl", merge(local.common, {
      role           = "client"
      data_dir       = local.paths.nomad_data
      server_join    = local.nomad_client_join
      node_class     = class
      node_pool      = c.node_pool
      host_volumes   = local.class_volumes[class]
      meta           = c.meta
      docker_volumes = var.docker_volumes
    }))
    consul_hcl = templatefile("${path.module}/templates/consul.hcl.tftpl", merge(local.common, {
      role        = "client"
      data_dir    = local.paths.consul_data
      client_addr = var.consul_client_addr
      retry_join  = local.consul_retry_join
    }))
    docker_daemon_json = jsonencode({ "insecure-registries" = local.insecure_registries })
    nomad_service = templatefile("${path.module}/templates/nomad.service.tftpl", {
      role = "client", bin_dir = local.bin_dir, config_dir = local.paths.nomad_config
    })
    consul_service = templatefile("${path.module}/templates/consul.service.tftpl", {
      role = "client", bin_dir = local.bin_dir, config_dir = local.paths.consul_config
    })
    host_volumes = local.class_volumes[class]
  } }

  node_pool_specs = { for name, description in var.node_pools : name => <<-EOT
    node_pool ${jsonencode(name)} {
      description = ${jsonencode(description)}
    }
    EOT
  }

  # Gossip keys are kept out of the files above (whose outputs are not
  # sensitive): each goes into a file of its own, read by the agents with
  # the rest of their config folder.
  nomad_gossip_hcl  = var.nomad_gossip_key == null ? null : "server {\n  encrypt = \"${var.nomad_gossip_key}\"\n}\n"
  consul_gossip_hcl = var.consul_gossip_key == null ? null : "encrypt = \"${var.consul_gossip_key}\"\n"

  # cloud-init: packages, then the files, then the agents.
  install_apt = [
    "apt-get update -q",
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates curl gnupg",
    "curl -fsSL ${var.apt_url}/gpg | gpg --dearmor --yes -o /usr/share/keyrings/hashicorp-archive-keyring.gpg",
    "echo \"deb [signed-by=/usr/share/keyrings/hashicorp-archive-keyring.gpg] ${var.apt_url} $(. /etc/os-release && echo $VERSION_CODENAME) main\" > /etc/apt/sources.list.d/hashicorp.list",
    "apt-get update -q",
    # --force-confold: keep the nomad.hcl and consul.hcl written above
    # instead of the packages' own.
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold nomad=${var.nomad_version}-1 consul=${var.consul_version}-1",
  ]
  install_releases = [
    "apt-get update -q",
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates curl unzip",
    "curl -fsSL -o /tmp/nomad.zip ${var.releases_url}/nomad/${var.nomad_version}/nomad_${var.nomad_version}_linux_amd64.zip && unzip -o -d ${local.bin_dir} /tmp/nomad.zip nomad && rm /tmp/nomad.zip",
    "curl -fsSL -o /tmp/consul.zip ${var.releases_url}/consul/${var.consul_version}/consul_${var.consul_version}_linux_amd64.zip && unzip -o -d ${local.bin_dir} /tmp/consul.zip consul && rm /tmp/consul.zip",
    "id consul >/dev/null 2>&1 || useradd --system --home-dir ${local.paths.consul_config} --shell /bin/false consul",
  ]
  install = var.install_from == "apt" ? local.install_apt : local.install_releases

  agent_dirs = [
    "install -d -m 0755 ${local.paths.nomad_data}",
    "install -d -m 0750 -o consul -g consul ${local.paths.consul_data}",
    "chown -R consul:consul ${local.paths.consul_config}",
    "chmod 0640 ${local.paths.consul_config}/*.hcl",
  ]
  start = ["systemctl daemon-reload", "systemctl enable --now consul.service nomad.service"]

  server_files = concat(
    [
      { path = "${local.paths.nomad_config}/nomad.hcl", permissions = "0644", content = local.server.nomad_hcl },
      { path = "${local.paths.consul_config}/consul.hcl", permissions = "0640", content = local.server.consul_hcl },
      { path = "/etc/systemd/system/nomad.service", permissions = "0644", content = local.server.nomad_service },
      { path = "/etc/systemd/system/consul.service", permissions = "0644", content = local.server.consul_service },
    ],
    local.nomad_gossip_hcl == null ? [] : [{ path = "${local.paths.nomad_config}/gossip.hcl", permissions = "0600", content = local.nomad_gossip_hcl }],
    local.consul_gossip_hcl == null ? [] : [{ path = "${local.paths.consul_config}/gossip.hcl", permissions = "0640", content = local.consul_gossip_hcl }],
  )

  server_cloud_init = "#cloud-config\n${yamlencode({
    write_files = local.server_files
    runcmd      = concat(local.install, local.agent_dirs, local.start)
  })}"

  client_cloud_init = { for class, c in local.clients : class => "#cloud-config\n${yamlencode({
    write_files = concat(
      [
        { path = "${local.paths.nomad_config}/nomad.hcl", permissions = "0644", content = c.nomad_hcl },
        { path = "${local.paths.consul_config}/consul.hcl", permissions = "0640", content = c.consul_hcl },
        { path = "/etc/docker/daemon.json", permissions = "0644", content = c.docker_daemon_json },
        { path = "/etc/systemd/system/nomad.service", permissions = "0644", content = c.nomad_service },
        { path = "/etc/systemd/system/consul.service", permissions = "0644", content = c.consul_service },
      ],
      local.consul_gossip_hcl == null ? [] : [{ path = "${local.paths.consul_config}/gossip.hcl", permissions = "0640", content = local.consul_gossip_hcl }],
    )
    runcmd = concat(
      ["apt-get update -q", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold docker.io"],
      var.registry_tls && var.registry_address != null && var.registry_ca_file != null ? [
        "install -D -m 0644 ${var.registry_ca_file} /etc/docker/certs.d/${var.registry_address}/ca.crt",
      ] : [],
      # Host volumes: the folders, the buckets' owned by the gateway's uid.
      [for name, path in c.host_volumes : "install -d -m 0755 ${path}"],
      var.client_classes[class].buckets ? flatten([
        [for name, path in var.bucket_folders : "install -d -m 0755 -o 10001 -g 10001 ${path}"],
        [for dst, src in local.bucket_binds : [
          "install -d -m 0755 ${dst}",
          "grep -qs ' ${dst} ' /etc/fstab || echo '${src} ${dst} none bind 0 0' >> /etc/fstab",
          "mountpoint -q ${dst} || mount ${dst}",
        ]],
        ["chown 10001:10001 ${var.buckets_path}"],
      ]) : [],
      ["systemctl restart docker.service"],
      local.install, local.agent_dirs, local.start,
    )
  })}" }
}
