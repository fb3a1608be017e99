"""se_deploy.models"""
