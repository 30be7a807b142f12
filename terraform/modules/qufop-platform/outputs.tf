output "gateway_urls" {
  description = "http://<address>:<ports.gateway> of every node that runs a gateway (the processing URLs' base: <url>/<bucket>/<key>?<fop>), sorted; addresses from node_addresses or default_node_address, else the node's name. Empty without the gateway job. Put a load balancer or DNS round robin in front of them."
  value       = local.gateway_urls
}

output "gateway_url" {
  description = "The first of gateway_urls (null without the gateway job)."
  value       = length(local.gateway_urls) > 0 ? local.gateway_urls[0] : null
}

output "management_url" {
  description = "http://<address>:<ports.builder> of the node that runs the builder: the management API, QUFOP_ADDR of the CLI and the qufop provider's endpoint (null without the builder job)."
  value       = local.management_url
}

output "registry_address" {
  description = "host:port UFOP images are pushed to and pulled from (the builder's --registry)."
  value       = local.registry_address
}

output "admin_keys_variable" {
  description = "Path of the Nomad Variable holding the admin keys (nomad/jobs/qufop-builder), null when admin_keys is null (the builder then generates its own). The keys themselves are never an output."
  value       = local.admin_keys_variable
}

output "jobs" {
  description = "Per deployed job (registry, builder, gateway, scaler): id (the Nomad job ID), namespace, modify_index, deployment_status (\"successful\" once healthy; null for the gateway, a system job, which has no deployment) and nodes (names of the nodes running it)."
  value       = local.jobs_out
}
