"""Programs that play the cluster add-ons in the sandbox, each run as a pod process by the kubelet.

The sandbox's helm stand-in installs a chart's Deployment as usual; the kubelet runs the module
here that matches the Deployment's image (Sealed Secrets, …) with ``KUBECONFIG`` and ``PORT`` set.
"""
