# Variables the module refuses, each with its message.

variables {
  retry_join = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
}

run "defaults_pass" {
  command = plan
}

run "even_server_count" {
  command = plan
  variables {
    server_count = 4
    retry_join   = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
  }
  expect_failures = [var.server_count]
}

run "one_server" {
  command = plan
  variables {
    server_count = 1
    retry_join   = ["10.0.0.1"]
  }
  expect_failures = [var.server_count]
}

run "empty_datacenter" {
  command = plan
  variables { datacenter = "" }
  expect_failures = [var.datacenter]
}

run "datacenter_with_quote" {
  command = plan
  variables { datacenter = "dc1\" bad" }
  expect_failures = [var.datacenter]
}

run "empty_region" {
  command = plan
  variables { region = "" }
  expect_failures = [var.region]
}

run "registry_with_scheme" {
  command = plan
  variables { registry_address = "http://10.0.0.5:5000" }
  expect_failures = [var.registry_address]
}

run "registry_without_port" {
  command = plan
  variables { registry_address = "10.0.0.5" }
  expect_failures = [var.registry_address]
}

run "registry_tls_without_address" {
  command = plan
  variables { registry_tls = true }
  expect_failures = [output.clients]
}

run "no_retry_join" {
  command = plan
  variables { retry_join = [] }
  expect_failures = [var.retry_join]
}

run "retry_join_with_port" {
  command = plan
  variables { retry_join = ["10.0.0.1:8301", "10.0.0.2", "10.0.0.3"] }
  expect_failures = [var.retry_join]
}

run "fewer_addresses_than_servers" {
  command = plan
  variables { retry_join = ["10.0.0.1", "10.0.0.2"] }
  expect_failures = [output.server]
}

run "duplicate_server_address" {
  command = plan
  variables { retry_join = ["10.0.0.1", "10.0.0.2", "10.0.0.1"] }
  expect_failures = [output.server]
}

run "bad_bucket_name" {
  command = plan
  variables { bucket_folders = { "Photos_1" = "/srv/qufop/buckets/Photos_1" } }
  expect_failures = [var.bucket_folders]
}

run "relative_bucket_path" {
  command = plan
  variables { bucket_folders = { photos = "data/photos" } }
  expect_failures = [var.bucket_folders]
}

run "bucket_path_with_dotdot" {
  command = plan
  variables { bucket_folders = { photos = "/srv/qufop/../etc" } }
  expect_failures = [var.bucket_folders]
}

run "no_client" {
  command = plan
  variables { client_classes = { qufop = { count = 0 } } }
  expect_failures = [var.client_classes]
}

run "fractional_count" {
  command = plan
  variables { client_classes = { qufop = { count = 1.5 } } }
  expect_failures = [var.client_classes]
}

run "no_registry_volume" {
  command = plan
  variables { client_classes = { qufop = { count = 2, registry = false } } }
  expect_failures = [var.client_classes]
}

run "unknown_node_pool" {
  command = plan
  variables { client_classes = { qufop = { count = 2, node_pool = "infra" } } }
  expect_failures = [output.clients]
}

run "reserved_node_pool" {
  command = plan
  variables { node_pools = { all = "every node" } }
  expect_failures = [var.node_pools]
}

run "tls_without_files" {
  command = plan
  variables {
    tls = { enabled = true, ca_file = "/etc/qufop/tls/ca.pem" }
  }
  expect_failures = [var.tls]
}

run "tls_with_pem_contents" {
  command = plan
  variables {
    tls = {
      enabled   = true
      ca_file   = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
      cert_file = "/etc/qufop/tls/agent.pem"
      key_file  = "/etc/qufop/tls/agent-key.pem"
    }
  }
  expect_failures = [var.tls]
}

run "short_consul_gossip_key" {
  command = plan
  variables { consul_gossip_key = "c2hvcnQ=" }
  expect_failures = [var.consul_gossip_key]
}

run "nomad_gossip_key_not_base64" {
  command = plan
  variables { nomad_gossip_key = "not a key, not a key, not a key, not a key!" }
  expect_failures = [var.nomad_gossip_key]
}

run "version_with_v" {
  command = plan
  variables { nomad_version = "v1.6.5" }
  expect_failures = [var.nomad_version]
}

run "unknown_install_method" {
  command = plan
  variables { install_from = "snap" }
  expect_failures = [var.install_from]
}

run "duplicate_ports" {
  command = plan
  variables { ports = { nomad_http = 8500 } }
  expect_failures = [var.ports]
}

run "consul_agent_addr_with_port" {
  command = plan
  variables { consul_agent_addr = "127.0.0.1:8500" }
  expect_failures = [var.consul_agent_addr]
}

run "node_name_with_space" {
  command = plan
  variables { node_name = "server 1" }
  expect_failures = [var.node_name]
}
